// 4. Memory per idle connection: 2,000 connected clients that joined a room. The server
// measures process.memoryUsage() after global.gc() before and after they connect.
// With default V8 flags, RSS growth is dominated by how far V8 happens to grow the young
// generation during the connection burst (up to 2 × 16 MiB, ~16 KB per connection here,
// whatever the target). `memoryFixedYoung` repeats the measurement with the young
// generation held at 1 MiB, which leaves the memory the connections really keep.
import { sleep, waitUntil, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type Target } from '../targets.js'
import { joinRoom } from './fanout.js'

const CLIENTS = 2_000
const WARM_UP_CLIENTS = 50

interface Usage {
  rss: number
  heapUsed: number
  external: number
  arrayBuffers: number
  youngBytes: number
  connections: number
}

export const memory = (target: Target, _context: BenchContext): Promise<Metrics> => measure(target, [])

export const memoryFixedYoung = (target: Target, _context: BenchContext): Promise<Metrics> =>
  measure(target, ['--max-semi-space-size=1'])

async function measure(target: Target, flags: readonly string[]): Promise<Metrics> {
  return withServers([{ script: target.script, flags }], async ([server]) => {
    // Code paths run once first, so that one-off costs (compiled code, lazy modules) are not counted per connection.
    const warm = await connectMany(target, server!.port, WARM_UP_CLIENTS)
    await joinRoom(warm)
    await closeAll(warm)
    const emptied = await waitUntil(async () => (await server!.control('connections')).connections === 0, 10_000)
    if (!emptied) throw new Error('the warm-up connections did not go away')
    await sleep(200)
    const before = await server!.control<Usage>('memory')
    const clients = await connectMany(target, server!.port, CLIENTS)
    try {
      await joinRoom(clients)
      await sleep(500)
      const after = await server!.control<Usage>('memory')
      if (after.connections !== CLIENTS) throw new Error(`the server holds ${after.connections} connections, not ${CLIENTS}`)
      return {
        rssPerConnection: (after.rss - before.rss) / CLIENTS,
        heapPerConnection: (after.heapUsed - before.heapUsed) / CLIENTS,
        externalPerConnection: (after.external - before.external) / CLIENTS,
        youngMB: after.youngBytes / 2 ** 20,
      }
    } finally {
      await closeAll(clients)
    }
  })
}
