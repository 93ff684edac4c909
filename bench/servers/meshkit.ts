// meshkit (msgpack): in memory by default; with BENCH_REDIS_URL, on Redis under
// BENCH_NAMESPACE; BENCH_HOOKS=noop adds no-op hooks; BENCH_PORTAL=1 enables portals (workload 9).
// BENCH_PING_INTERVAL / BENCH_LATENCY_INTERVAL set the heartbeat. BENCH_METRICS=1 turns metrics on
// (bench/metrics-cost.ts).
import { MeshServer } from 'meshkit/server'
import { serveControl } from './control.js'
import { countTo } from './count-to.js'

const env = process.env
const server = new MeshServer({
  host: '127.0.0.1',
  port: 0,
  ...(env.BENCH_REDIS_URL ? { redis: env.BENCH_REDIS_URL, namespace: env.BENCH_NAMESPACE } : {}),
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
// Workload 9's baseline: client messages handled here, counted until the load's target.
const ticks = countTo()
server.onMessage('tick', () => ticks.count())
await server.ready()
serveControl(server.port, () => server.connections.size, {
  'expect-ticks': (total) => ticks.expect(Number(total)),
  'await-ticks': () => ticks.reached(),
  stats: () => ({ ...server.stats }),
})
