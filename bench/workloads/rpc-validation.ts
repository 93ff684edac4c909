// 10. RPC with validated payloads (issue 15): workload 1's load (50 clients × 10 awaited
// calls of `echo` with its small object payload) against three meshkit servers side by
// side: (a) no `api` — workload 1's server —, (b) `api` with a zod schema for `echo`'s
// payload, (c) the same with valibot. Measured as workload 1 measures its targets: 0.5 s
// slices taken in turn, the order rotating every cycle, so that outside load reaches all
// three alike; a ratio of a round is the median of its per-cycle ratios to (a). CPU per
// round trip of each server says what a validated call costs whatever else runs.
import { median, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, targets, type BenchClient, type Target, type TargetKey } from '../targets.js'
import { slice, type Tally } from './rpc.js'

const CLIENTS = 50
const WARM_UP_MS = 1_000
const SLICE_MS = 500
const variants = [
  { name: 'untyped', env: {} },
  { name: 'zod', env: { BENCH_API: 'zod' } },
  { name: 'valibot', env: { BENCH_API: 'valibot' } },
] as const

/** One round: figures of the three servers, reported under meshkit's column. */
export async function rpcValidation(_chosen: readonly Target[], context: BenchContext): Promise<Partial<Record<TargetKey, Metrics>>> {
  const target = targets.mesh
  return withServers(variants.map((variant) => ({ script: target.script, env: variant.env })), async (servers) => {
    const clients: BenchClient[][] = []
    try {
      for (const server of servers) clients.push(await connectMany(target, server.port, CLIENTS))
      for (const [index, group] of clients.entries()) await slice(group, servers[index]!, WARM_UP_MS)
      const tallies: Tally[] = variants.map(() => ({ requests: 0, ms: 0, latencies: [], perSlice: [], serverCpuMs: 0, clientCpuMs: 0 }))
      const cycles = Math.max(1, Math.round((context.config.rpcSeconds * 1000) / SLICE_MS))
      for (let cycle = 0; cycle < cycles; cycle++) {
        for (let turn = 0; turn < variants.length; turn++) {
          const index = (cycle + turn) % variants.length
          await slice(clients[index]!, servers[index]!, SLICE_MS, tallies[index])
        }
      }
      const metrics: Metrics = {}
      const untyped = tallies[0]!
      for (const [index, variant] of variants.entries()) {
        const { requests, ms, serverCpuMs, perSlice } = tallies[index]!
        metrics[`${variant.name}Rps`] = requests / (ms / 1000)
        metrics[`${variant.name}ServerCpuUs`] = (serverCpuMs * 1000) / requests
        if (index > 0) metrics[`${variant.name}OverUntyped`] = median(perSlice.map((value, cycle) => value / untyped.perSlice[cycle]!))
      }
      return { mesh: metrics }
    } finally {
      await Promise.all(clients.map(closeAll))
    }
  })
}
