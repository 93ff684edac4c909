// 1. RPC: 50 clients with 10 requests in flight each, small object payload.
import { percentile, sleep, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'

const CLIENTS = 50
const IN_FLIGHT = 10
const WARM_UP_MS = 500
const payload = { user: 'ada', action: 'update', values: [1, 2, 3], at: 1_700_000_000_000 }

async function measure(clients: readonly BenchClient[], seconds: number): Promise<Metrics> {
  // A short warm-up so that JIT and socket buffers settle before counting.
  const warmUntil = Date.now() + WARM_UP_MS
  await Promise.all(clients.map(async (client) => {
    while (Date.now() < warmUntil) await client.call('echo', payload)
  }))
  const latencies: number[] = []
  let running = true
  const loop = async (client: BenchClient): Promise<void> => {
    while (running) {
      const started = performance.now()
      await client.call('echo', payload)
      latencies.push(performance.now() - started)
    }
  }
  const startedAt = performance.now()
  const loops = clients.flatMap((client) => Array.from({ length: IN_FLIGHT }, () => loop(client)))
  await sleep(seconds * 1000)
  running = false
  await Promise.all(loops)
  const elapsed = (performance.now() - startedAt) / 1000
  latencies.sort((a, b) => a - b)
  return { rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

export async function rpc(target: Target, context: BenchContext): Promise<Metrics> {
  return withServers([{ script: target.script }], async ([server]) => {
    const clients = await connectMany(target, server!.port, CLIENTS)
    try {
      return await measure(clients, context.config.rpcSeconds)
    } finally {
      await closeAll(clients)
    }
  })
}
