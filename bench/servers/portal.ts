// A Portal in a process of its own (workload 9), so that its CPU is not the server's:
// it answers the `portal-echo` command and counts `tick` messages, on BENCH_REDIS_URL
// under BENCH_NAMESPACE. It has no port: it prints `PORT 0` once ready, for the
// orchestrator's control channel.
import { performance } from 'node:perf_hooks'
import { Portal } from 'meshkit/server'
import { serveControl } from './control.js'
import { countTo } from './count-to.js'

const env = process.env
const portal = new Portal(env.BENCH_REDIS_URL!, { namespace: env.BENCH_NAMESPACE })
const ticks = countTo()
// With several portals (curve 6) each handles a share the load cannot know in advance: it
// sums every portal's count, and the last tick's time (on the clock all processes share) ends the run.
let handled = 0
let lastTickAt = 0
portal.registerCommand('portal-echo', (ctx) => ctx.payload)
portal.onMessage('tick', () => {
  ticks.count()
  handled++
  lastTickAt = performance.timeOrigin + performance.now()
})
await portal.ready()
serveControl(0, () => 0, {
  'expect-ticks': (total) => ticks.expect(Number(total)),
  'await-ticks': () => ticks.reached(),
  ticks: () => ({ handled, lastTickAt }),
  stats: () => ({ ...portal.stats }),
})
// close() hands the portal's partitions back at once, so the next round's portal needs no lease to expire.
process.removeAllListeners('SIGTERM')
process.once('SIGTERM', () => void portal.close().finally(() => process.exit(0)))
