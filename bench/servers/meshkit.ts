// meshkit (msgpack): in memory by default; with BENCH_REDIS_URL, on Redis under
// BENCH_NAMESPACE; BENCH_HOOKS=noop adds no-op hooks; BENCH_PORTAL=1 enables portals (workload 9).
// BENCH_PING_INTERVAL / BENCH_LATENCY_INTERVAL set the heartbeat. BENCH_API=zod|valibot
// gives the server the `api` option, whose schema validates `echo`'s payload (the
// rpcValidation workload). Rooms named "presence…" carry presence (the presence workloads).
// BENCH_METRICS=1 turns metrics on (bench/metrics-cost.ts).
import { performance } from 'node:perf_hooks'
import { MeshServer, type MeshServerOptions } from 'meshkit/server'
import { serveControl } from './control.js'
import { countTo } from './count-to.js'

const env = process.env
const clusterNodes = (list: string): Array<{ host: string; port: number }> =>
  list.split(',').map((node) => ({ host: node.split(':')[0]!, port: Number(node.split(':')[1]) }))
const api = env.BENCH_API === 'zod' || env.BENCH_API === 'valibot' ? (await import('./bench-api.js')).benchApis[env.BENCH_API] : undefined
const server = new MeshServer({
  ...(api ? ({ api } as MeshServerOptions) : {}),
  host: '127.0.0.1',
  port: 0,
  ...(env.BENCH_REDIS_URL ? { redis: env.BENCH_REDIS_URL, namespace: env.BENCH_NAMESPACE } : {}),
  // BENCH_REDIS_CLUSTER: "host:port,host:port,...", startup nodes of a Redis Cluster (bench/redis-cluster.ts).
  ...(env.BENCH_REDIS_CLUSTER ? { redis: clusterNodes(env.BENCH_REDIS_CLUSTER), namespace: env.BENCH_NAMESPACE } : {}),
  ...(env.BENCH_PING_INTERVAL ? { pingInterval: Number(env.BENCH_PING_INTERVAL) } : {}),
  ...(env.BENCH_LATENCY_INTERVAL ? { latencyInterval: Number(env.BENCH_LATENCY_INTERVAL) } : {}),
  ...(env.BENCH_PORTAL === '1' ? { portal: { enabled: true } } : {}),
  ...(env.BENCH_METRICS === '1' ? { metrics: true } : {}),
})
// BENCH_HOOKS=noop: a set of no-op message hooks, to show that hooks cost a broadcast nothing per recipient.
if (env.BENCH_HOOKS === 'noop') server.use({ onMessageSent() {}, onMessageReceived() {} })
server.registerCommand('echo', (ctx) => ctx.payload)
server.registerCommand<string>('join', async (ctx) => {
  await server.addToRoom(ctx.payload, ctx.connection)
  return true
})
server.registerCommand<{ room: string; count: number; tag: number }>('fanout', async (ctx) => {
  const { room, count, tag } = ctx.payload
  const sent: Promise<void>[] = []
  for (let seq = 0; seq < count; seq++) sent.push(server.broadcastRoom(room, 'tick', { seq, tag, text: 'hello, room' }))
  await Promise.all(sent)
  return count
})
// Issue 11: what users write, as the Mesh README shows it: each broadcast awaited before the next.
server.registerCommand<{ room: string; count: number; tag: number }>('fanoutAwaited', async (ctx) => {
  const { room, count, tag } = ctx.payload
  for (let seq = 0; seq < count; seq++) await server.broadcastRoom(room, 'tick', { seq, tag, text: 'hello, room' })
  return count
})
// A chat message: the command's reply waits for the broadcast to the whole room.
server.registerCommand<{ room: string }>('say', async (ctx) => {
  await server.broadcastRoom(ctx.payload.room, 'chat', ctx.payload)
  return true
})
// Workload 10: clients join these with `joinRoom(room, { presence })`.
server.exposeRoom(/^presence/, undefined, { presence: true })
// Workload 9's baseline: client messages handled here, counted until the load's target.
const ticks = countTo()
server.onMessage('tick', () => ticks.count())
await server.ready()
serveControl(server.port, () => server.connections.size, {
  'expect-ticks': (total) => ticks.expect(Number(total)),
  'await-ticks': () => ticks.reached(),
  stats: () => ({ ...server.stats }),
  // `channel-writes <writers> <channels> <total>`: `writers` loops, each awaiting one
  // writeChannel (historyLimit 100) after another, over `channels` channels, `total` in
  // all; the time, this process's CPU µs, and the median µs of one write.
  'channel-writes': async (argument) => {
    const [writers = 1, channels = 1, total = 1_000] = argument.split(' ').map(Number)
    const latencies: number[] = []
    let next = 0
    const cpu = process.cpuUsage()
    const startedAt = performance.now()
    await Promise.all(
      Array.from({ length: writers }, async () => {
        for (let n = next++; n < total; n = next++) {
          const writeStarted = performance.now()
          await server.writeChannel(`feed-${n % channels}`, { n, text: 'hello, channel' }, 100)
          latencies.push(performance.now() - writeStarted)
        }
      }),
    )
    const ms = performance.now() - startedAt
    const { user, system } = process.cpuUsage(cpu)
    latencies.sort((a, b) => a - b)
    return { ms, cpuUs: user + system, p50Us: latencies[latencies.length >> 1]! * 1000 }
  },
  // `presence-list <room> <times>`: server.getPresence timed here, awaited one at a time, without the client's round trip.
  'presence-list': async (argument) => {
    const [room = '', times = '1'] = argument.split(' ')
    const ms: number[] = []
    let members = 0
    for (let i = 0; i < Number(times); i++) {
      const startedAt = performance.now()
      members = (await server.getPresence(room)).length
      ms.push(performance.now() - startedAt)
    }
    ms.sort((a, b) => a - b)
    const at = (p: number): number => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))]!
    return { members, p50: at(50), p99: at(99) }
  },
})
