// 13. Memory and event-loop delay as idle connections grow (issue 18): 1,000, 10,000 and
// 30,000 clients that connect and stay idle, heartbeats on at meshkit's defaults
// (pingInterval 30000, latencyInterval 5000: a ping to every connection every 5 s; raw
// ws: the ping/terminate loop of ws's README every 5 s; Socket.IO: pingInterval 5000).
// Workload 6's 2000/1000 is a stress test: with tens of thousands of clients in one load
// process on two busy cores, pongs there come late and the servers rightly cut them. The server measures process.memoryUsage() after
// global.gc() before they connect (after a 50-client warm-up) and after they were held
// 6 s (so that a ping round falls in it), sampling its event-loop delay meanwhile. Default V8 flags: RSS includes
// whatever young generation V8 grew to, as in production. 30,000 sockets need an
// open-files limit above 31,000 in the server and in this process (and more local ports
// than one source address has): where the hard limit is lower, the largest point is the
// most the limit allows, and its `connections` figure says which.
import { readFileSync } from 'node:fs'
import type { Curve, CurvePoint, CurveSeries } from '../curves.js'
import { processOptions, sleep, waitUntil, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, targets, type BenchClient, type Target, type TargetKey } from '../targets.js'

export const SCALE_POINTS = [1_000, 10_000, 30_000] as const
const WARM_UP_CLIENTS = 50
/** File descriptors a process needs beyond its sockets (modules, pipes, the listener). */
const HEADROOM = 1_000
const heartbeat = { BENCH_PING_INTERVAL: '30000', BENCH_LATENCY_INTERVAL: '5000' }

// x is the connections a point held: the largest holds fewer where the open-files limit caps it.
const points: CurvePoint[] = [
  { x: 1_000, workload: 'memoryScale1k', xMetric: 'connections' },
  { x: 10_000, workload: 'memoryScale10k', xMetric: 'connections' },
  { x: 30_000, workload: 'memoryScale30k', xMetric: 'connections' },
]
const perTarget = (metric: string, suffix = ''): CurveSeries[] =>
  (['raw', 'sio', 'mesh'] as const satisfies readonly TargetKey[]).map((target) => ({ label: `${targets[target].label}${suffix}`, target, metric }))

/** Curve 4 of issue 18. */
export const memoryScaleCurve: Curve = {
  id: 'idle-connections',
  number: 4,
  title: 'Memory per idle connection, heartbeats on',
  x: { label: 'idle connections held', log: true },
  y: { label: 'server bytes per connection' },
  points,
  series: [...perTarget('rssPerConnection', ', RSS'), ...perTarget('heapPerConnection', ', heap')],
  secondary: { y: { label: 'event-loop delay p99 ms' }, series: perTarget('loopP99') },
  flatness: [
    { label: 'heap bytes per connection', target: 'mesh', metric: 'heapPerConnection', lowerIsBetter: true },
    {
      label: 'RSS bytes per connection',
      target: 'mesh',
      metric: 'rssPerConnection',
      lowerIsBetter: true,
      knee: 'RSS per connection at 1,000 is mostly V8\'s young generation, not what the connections keep: the burst of ' +
        'accepted connections makes V8 double its semi-spaces (up to 2 × 16 MiB), and 16 MiB more over 1,000 connections ' +
        'reads as 16 KB each (the "young generation growth" rows say what it grew by in this run). From 10,000 on every ' +
        'target sits at the 32 MiB cap and RSS per connection follows the heap, so the figure falls as connections grow. ' +
        'Heap per connection, measured after global.gc() and so without the young generation, is the honest flatness metric.',
    },
  ],
}

interface Usage {
  rss: number
  heapUsed: number
  youngBytes: number
  connections: number
}

/** `count` connections, or as many as this run's open-files limit and local ports allow, in thousands. */
export function feasible(count: number): number {
  const limit = Math.min(processOptions.openFiles, localPorts()) - HEADROOM
  return limit >= count ? count : Math.max(1_000, Math.floor(limit / 1_000) * 1_000)
}

/** Ephemeral ports of one source address: every client socket to the one server address takes one. */
function localPorts(): number {
  try {
    const [low = 0, high = 0] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    return high - low + 1
  } catch {
    return Infinity
  }
}

export const memoryScale = (count: number) => (target: Target, _context: BenchContext): Promise<Metrics> => {
  const clients = feasible(count)
  return withServers([{ script: target.script, env: heartbeat }], async ([server]) => {
    const warm = await connectMany(target, server!.port, WARM_UP_CLIENTS)
    await closeAll(warm)
    if (!(await waitUntil(async () => (await server!.control('connections')).connections === 0, 10_000))) {
      throw new Error('the warm-up connections did not go away')
    }
    await sleep(200)
    const before = await server!.control<Usage>('memory')
    const opened: BenchClient[] = []
    try {
      const startedAt = performance.now()
      opened.push(...(await connectMany(target, server!.port, clients, 200)))
      const connectSeconds = (performance.now() - startedAt) / 1000
      let dropped = 0
      for (const client of opened) client.onDrop(() => dropped++)
      await server!.control('loop-start')
      // Not shortened under --quick: a ping round (every 5 s) must fall in the hold, and the connects take far longer.
      await sleep(6_000)
      const held = await server!.control('loop-stop')
      const after = await server!.control<Usage>('memory')
      if (after.connections !== clients || dropped > 0) throw new Error(`the server holds ${after.connections} of ${clients} connections, ${dropped} dropped`)
      return {
        connections: clients,
        rssPerConnection: (after.rss - before.rss) / clients,
        heapPerConnection: (after.heapUsed - before.heapUsed) / clients,
        loopP99: held.loopP99!,
        rssMB: after.rss / 2 ** 20,
        youngMB: after.youngBytes / 2 ** 20,
        // What the young generation grew by during the burst: RSS includes it, the heap after gc() does not.
        youngGrowthMB: (after.youngBytes - before.youngBytes) / 2 ** 20,
        connectSeconds,
      }
    } finally {
      await closeAll(opened)
    }
  })
}
