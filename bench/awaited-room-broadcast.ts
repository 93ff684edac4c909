// Awaited room broadcasts across two instances, as applications write them: each
// `await server.broadcastRoom()` before the next. Two servers in this process on one
// Redis, CLIENTS clients split over them, all in one room; instance A broadcasts N
// times. Reports the awaited calls per second and until the last delivery arrived.
//   npx tsx bench/awaited-room-broadcast.ts              (starts its own redis-server)
//   N=2000 CLIENTS=100 ROUNDS=3 npx tsx bench/awaited-room-broadcast.ts
import { MeshClient } from '../src/client/index.js'
import { MeshServer } from '../src/server/index.js'
import { startRedisServer } from '../test/support/redis-server.js'
import { median } from './support.js'

const N = Number(process.env.N ?? 2_000)
const CLIENTS = Number(process.env.CLIENTS ?? 100)
const ROUNDS = Number(process.env.ROUNDS ?? 3)

async function round(redis: string, namespace: string): Promise<{ callsPerSecond: number; deliveredMs: number; msPerCall: number }> {
  const servers = [new MeshServer({ host: '127.0.0.1', port: 0, redis, namespace }), new MeshServer({ host: '127.0.0.1', port: 0, redis, namespace })]
  await Promise.all(servers.map((server) => server.ready()))
  const clients: MeshClient[] = []
  let received = 0
  let allReceived = (): void => {}
  const done = new Promise<void>((resolve) => (allReceived = resolve))
  for (let i = 0; i < CLIENTS; i++) {
    const server = servers[i % 2]!
    const client = new MeshClient(`ws://127.0.0.1:${server.port}`)
    await client.connect()
    await server.addToRoom('room', client.id!)
    client.on('n', () => {
      if (++received === N * CLIENTS) allReceived()
    })
    clients.push(client)
  }
  const started = performance.now()
  for (let n = 0; n < N; n++) await servers[0]!.broadcastRoom('room', 'n', n)
  const called = performance.now()
  await done
  const delivered = performance.now()
  await Promise.all(clients.map((client) => client.close()))
  await Promise.all(servers.map((server) => server.close()))
  return { callsPerSecond: N / ((called - started) / 1000), msPerCall: (called - started) / N, deliveredMs: delivered - started }
}

async function main(): Promise<void> {
  const given = process.env.REDIS_URL
  const redis = given ? { url: given, stop: async () => {} } : await startRedisServer()
  const results = []
  try {
    for (let r = 0; r < ROUNDS; r++) results.push(await round(redis.url, `bench-awaited-${r}-${Date.now()}`))
  } finally {
    await redis.stop()
  }
  const fmt = (values: number[]): string => values.map((v) => v.toFixed(v < 10 ? 3 : 0)).join(', ')
  console.log(`awaited broadcastRoom, ${N} calls, ${CLIENTS} clients on 2 instances, ${ROUNDS} rounds`)
  console.log(`  calls/s      ${fmt(results.map((r) => r.callsPerSecond))}  (median ${median(results.map((r) => r.callsPerSecond)).toFixed(0)})`)
  console.log(`  ms per call  ${fmt(results.map((r) => r.msPerCall))}  (median ${median(results.map((r) => r.msPerCall)).toFixed(3)})`)
  console.log(`  all delivered after ms ${fmt(results.map((r) => r.deliveredMs))}`)
}

await main()
