// Cost of user-addressed sends with sync off, sync on (offline users only) and the
// acknowledged mode (sync.keepUntilAcknowledged), from a Dispatcher to users
// connected to a server, everything on one Redis. Bounded: a few seconds per mode.
//   npx tsx bench/user-send-cost.ts            (starts its own redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/user-send-cost.ts
import { MeshClient } from '../src/client/index.js'
import { Dispatcher, MeshServer, type SyncOptions } from '../src/server/index.js'
import { startRedisServer } from '../test/support/redis-server.js'
import { median } from './support.js'

const USERS = 20
const MESSAGES = Number(process.env.MESSAGES ?? 20_000)
// As users write it: each dispatch awaited before the next (IN_FLIGHT=64 for a pipelined sender).
const IN_FLIGHT = Number(process.env.IN_FLIGHT ?? 1)
const ROUNDS = 3

async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const given = process.env.REDIS_URL
  return given ? { url: given, stop: async () => {} } : startRedisServer()
}

/** Messages per second from the first dispatch until every client has received every message. */
async function run(redis: string, sync: SyncOptions, namespace: string): Promise<number> {
  const server = new MeshServer({ host: '127.0.0.1', port: 0, redis, namespace, sync })
  server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
  await server.ready()
  const dispatcher = new Dispatcher(redis, { namespace, sync })
  const clients: MeshClient[] = []
  let received = 0
  let allReceived = (): void => {}
  const done = new Promise<void>((resolve) => (allReceived = resolve))
  for (let u = 0; u < USERS; u++) {
    const client = new MeshClient(`ws://127.0.0.1:${server.port}`)
    await client.connect()
    await client.authenticate({ user: `u${u}` })
    client.on('n', () => {
      if (++received === MESSAGES) allReceived()
    })
    clients.push(client)
  }
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < MESSAGES) {
        const n = next++
        await dispatcher.dispatch('n', n, [`u${n % USERS}`])
      }
    }),
  )
  await done
  const seconds = (performance.now() - started) / 1000
  await Promise.all(clients.map((client) => client.close()))
  await dispatcher.close()
  await server.close()
  return MESSAGES / seconds
}

async function main(): Promise<void> {
  const redis = await startRedis()
  const modes: Array<[string, SyncOptions]> = [
    ['sync off', { enabled: false }],
    ['sync, offline users only', { enabled: true, keepUntilAcknowledged: false }],
    ['sync, kept until acknowledged', { enabled: true, keepUntilAcknowledged: true }],
  ]
  const results = new Map<string, number[]>()
  try {
    // One untimed pass warms the JIT; then each round starts with another mode, since
    // the first run of a round measured slower whatever its mode.
    for (const [name, sync] of modes) await run(redis.url, sync, `bench-users-warm-${name.replace(/\W+/g, '-')}`)
    for (let round = 0; round < ROUNDS; round++) {
      for (let index = 0; index < modes.length; index++) {
        const [name, sync] = modes[(index + round) % modes.length]!
        const rate = await run(redis.url, sync, `bench-users-${round}-${name.replace(/\W+/g, '-')}`)
        results.set(name, [...(results.get(name) ?? []), rate])
      }
    }
  } finally {
    await redis.stop()
  }
  const baseline = median(results.get('sync off')!)
  console.log(`${MESSAGES} user-addressed messages to ${USERS} users, ${IN_FLIGHT} dispatches in flight, median of ${ROUNDS}`)
  for (const [name] of modes) {
    const rate = median(results.get(name)!)
    console.log(`${name.padEnd(32)} ${Math.round(rate).toString().padStart(7)} msg/s   ${(rate / baseline).toFixed(2)}× sync off`)
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
