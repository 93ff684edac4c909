// 1. RPC: 50 clients with 10 requests in flight each, small object payload, every request
// an awaited call (`await client.command(...)` for meshkit) as users write it.
//
// The three targets are measured together, interleaved: their servers run side by side
// and the round's measuring time is cut into 0.5 s slices, one target at a time, in an
// order that rotates every cycle. Measured one target after another (3 s each), a change
// in what else ran on the shared cores landed on one target and not the others, and the
// ratio to raw ws moved from 0.94× to 1.51× between rounds of one run. Interleaved, slow
// drift reaches every target alike; a burst of outside load still lands in a few slices,
// so meshkit's ratio of a round is the median of its per-cycle ratios (slices measured
// within ~1 s of each other), which a burst in either direction does not move. The
// round-trips/s figures are plain totals over all slices.
//
// CPU time per round trip (the target's server plus the load process running its
// clients) is reported beside: it says what a call costs whatever else runs, which the
// throughput on shared cores cannot.
import { median, percentile, sleep, withServers, type BenchContext, type Metrics, type ServerProcess } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target, type TargetKey } from '../targets.js'

const CLIENTS = 50
const IN_FLIGHT = 10
const WARM_UP_MS = 1_000
const SLICE_MS = 500
const payload = { user: 'ada', action: 'update', values: [1, 2, 3], at: 1_700_000_000_000 }

export interface Tally {
  requests: number
  ms: number
  latencies: number[]
  /** Round-trips/s of each slice, by cycle. */
  perSlice: number[]
  /** CPU milliseconds of the server and of the load process in the slices. */
  serverCpuMs: number
  clientCpuMs: number
}

const cpuMs = (): number => {
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

/** Every client keeps IN_FLIGHT awaited calls going for `ms`; counts until the last returned. */
export async function slice(clients: readonly BenchClient[], server: ServerProcess, ms: number, tally?: Tally): Promise<void> {
  let running = true
  const loop = async (client: BenchClient): Promise<void> => {
    while (running) {
      const started = performance.now()
      await client.call('echo', payload)
      if (tally) {
        tally.latencies.push(performance.now() - started)
        tally.requests++
      }
    }
  }
  // Asked before the clock starts and after it stops, so the control channel is not timed.
  const serverCpuBefore = tally ? (await server.control<{ cpuMs: number }>('cpu')).cpuMs : 0
  const clientCpuBefore = cpuMs()
  const startedAt = performance.now()
  const before = tally?.requests ?? 0
  const loops = clients.flatMap((client) => Array.from({ length: IN_FLIGHT }, () => loop(client)))
  await sleep(ms)
  running = false
  await Promise.all(loops)
  if (!tally) return
  const elapsed = performance.now() - startedAt
  tally.clientCpuMs += cpuMs() - clientCpuBefore
  tally.serverCpuMs += (await server.control<{ cpuMs: number }>('cpu')).cpuMs - serverCpuBefore
  tally.ms += elapsed
  tally.perSlice.push((tally.requests - before) / (elapsed / 1000))
}

/**
 * One round of RPC with `clients` clients (IN_FLIGHT calls each) for `chosen` targets at
 * once, in slices of `sliceMs`: figures per target, and meshkit's ratios of this round.
 */
export const rpcWith = (clients: number, sliceMs: number) => (chosen: readonly Target[], context: BenchContext): Promise<Partial<Record<TargetKey, Metrics>>> =>
  withServers(chosen.map((target) => ({ script: target.script, env: target.env })), async (servers) => {
    const groups: BenchClient[][] = []
    try {
      for (const [index, target] of chosen.entries()) groups.push(await connectMany(target, servers[index]!.port, clients))
      // Each target warms up once, so that JIT and socket buffers settle before counting.
      for (const [index, group] of groups.entries()) await slice(group, servers[index]!, Math.max(WARM_UP_MS, sliceMs))
      const tallies: Tally[] = chosen.map(() => ({ requests: 0, ms: 0, latencies: [], perSlice: [], serverCpuMs: 0, clientCpuMs: 0 }))
      const cycles = Math.max(1, Math.round((context.config.rpcSeconds * 1000) / sliceMs))
      for (let cycle = 0; cycle < cycles; cycle++) {
        for (let turn = 0; turn < chosen.length; turn++) {
          const index = (cycle + turn) % chosen.length
          await slice(groups[index]!, servers[index]!, sliceMs, tallies[index])
        }
      }
      const results: Partial<Record<TargetKey, Metrics>> = {}
      for (const [index, target] of chosen.entries()) {
        const { requests, ms, latencies, serverCpuMs, clientCpuMs } = tallies[index]!
        latencies.sort((a, b) => a - b)
        results[target.key] = {
          rps: requests / (ms / 1000),
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          serverCpuUs: (serverCpuMs * 1000) / requests,
          clientCpuUs: (clientCpuMs * 1000) / requests,
        }
      }
      const slices = (key: TargetKey): number[] | undefined => tallies[chosen.findIndex((target) => target.key === key)]?.perSlice
      const pairedRatio = (of: number[], to: number[]): number => median(of.map((value, cycle) => value / to[cycle]!))
      const [mesh, raw, sio] = [slices('mesh'), slices('raw'), slices('sio')]
      if (mesh && raw) results.mesh!.overRaw = pairedRatio(mesh, raw)
      if (mesh && sio) results.mesh!.overSio = pairedRatio(mesh, sio)
      return results
    } finally {
      await Promise.all(groups.map(closeAll))
    }
  })

/** Workload 1: CLIENTS clients. */
export const rpc = rpcWith(CLIENTS, SLICE_MS)
