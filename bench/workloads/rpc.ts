// 1. RPC: 50 clients with 10 requests in flight each, small object payload, every request
// an awaited call (`await client.command(...)` for meshkit) as users write it.
//
// The three targets are measured together, interleaved: their servers run side by side
// and the round's measuring time is cut into 0.5 s slices, one target at a time, in an
// order that rotates every cycle. Measured one target after another (3 s each), a change
// in what else ran on the shared cores landed on one target and not the others, and the
// ratio to raw ws moved from 0.94× to 1.51× between rounds of one run; interleaved, each
// target sees the same conditions, and the per-round ratio is what the report checks.
import { percentile, sleep, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target, type TargetKey } from '../targets.js'

const CLIENTS = 50
const IN_FLIGHT = 10
const WARM_UP_MS = 1_000
const SLICE_MS = 500
const payload = { user: 'ada', action: 'update', values: [1, 2, 3], at: 1_700_000_000_000 }

interface Tally {
  requests: number
  ms: number
  latencies: number[]
}

/** Every client keeps IN_FLIGHT awaited calls going for `ms`; counts until the last returned. */
async function slice(clients: readonly BenchClient[], ms: number, tally?: Tally): Promise<void> {
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
  const startedAt = performance.now()
  const loops = clients.flatMap((client) => Array.from({ length: IN_FLIGHT }, () => loop(client)))
  await sleep(ms)
  running = false
  await Promise.all(loops)
  if (tally) tally.ms += performance.now() - startedAt
}

/** One round of RPC for `chosen` targets at once: figures per target, and meshkit's ratios of this round. */
export async function rpc(chosen: readonly Target[], context: BenchContext): Promise<Partial<Record<TargetKey, Metrics>>> {
  return withServers(chosen.map((target) => ({ script: target.script })), async (servers) => {
    const clients: BenchClient[][] = []
    try {
      for (const [index, target] of chosen.entries()) clients.push(await connectMany(target, servers[index]!.port, CLIENTS))
      // Each target warms up once, so that JIT and socket buffers settle before counting.
      for (const group of clients) await slice(group, WARM_UP_MS)
      const tallies: Tally[] = chosen.map(() => ({ requests: 0, ms: 0, latencies: [] }))
      const cycles = Math.max(1, Math.round((context.config.rpcSeconds * 1000) / SLICE_MS))
      for (let cycle = 0; cycle < cycles; cycle++) {
        for (let turn = 0; turn < chosen.length; turn++) {
          const index = (cycle + turn) % chosen.length
          await slice(clients[index]!, SLICE_MS, tallies[index])
        }
      }
      const results: Partial<Record<TargetKey, Metrics>> = {}
      for (const [index, target] of chosen.entries()) {
        const { requests, ms, latencies } = tallies[index]!
        latencies.sort((a, b) => a - b)
        results[target.key] = { rps: requests / (ms / 1000), p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
      }
      const { mesh, raw, sio } = results
      if (mesh && raw) mesh.overRaw = mesh.rps! / raw.rps!
      if (mesh && sio) mesh.overSio = mesh.rps! / sio.rps!
      return results
    } finally {
      await Promise.all(clients.map(closeAll))
    }
  })
}
