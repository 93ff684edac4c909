// 6. Many connections: 10,000 concurrent connections to one meshkit instance with
// heartbeats on, held for a while; the server reports what it holds, its RSS and its
// event-loop delay; the load side counts drops.
import { sleep, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'

export const CONNECTIONS = 10_000
const heartbeat = { BENCH_PING_INTERVAL: '2000', BENCH_LATENCY_INTERVAL: '1000' }

export async function connections(target: Target, context: BenchContext): Promise<Metrics> {
  return withServers([{ script: target.script, env: heartbeat }], async ([server]) => {
    const clients: BenchClient[] = []
    let dropped = 0
    try {
      const startedAt = performance.now()
      clients.push(...(await connectMany(target, server!.port, CONNECTIONS, 200)))
      const connectSeconds = (performance.now() - startedAt) / 1000
      for (const client of clients) client.onDrop(() => dropped++)
      await server!.control('loop-start')
      await sleep(context.config.holdSeconds * 1000)
      const held = await server!.control('loop-stop')
      return {
        held: held.connections!,
        open: clients.filter((client) => client.isOpen()).length,
        dropped,
        loopP99: held.loopP99!,
        loopMax: held.loopMax!,
        rssMB: held.rss! / 2 ** 20,
        connectSeconds,
      }
    } finally {
      await closeAll(clients)
    }
  })
}
