// Cost of user-addressed sends with sync off, sync on (offline users only) and the
// acknowledged mode (sync.keepUntilAcknowledged), from a Dispatcher to users
// connected to a server, everything on one Redis. Bounded: a few seconds per mode.
//   npx tsx bench/user-send-cost.ts            (starts its own redis-server)
//   REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/user-send-cost.ts
import { spawn, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'
import { MeshClient } from '../src/client/index.js'
import { Dispatcher, MeshServer, type SyncOptions } from '../src/server/index.js'

const USERS = 20
const MESSAGES = Number(process.env.MESSAGES ?? 20_000)
const IN_FLIGHT = 64
const ROUNDS = 3

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function startRedis(): Promise<{ url: string; process?: ChildProcess }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL }
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const url = `redis://127.0.0.1:${port}`
  for (let i = 0; i < 100; i++) {
    const probe = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => (socket.destroy(), resolve(true)))
      socket.once('error', () => resolve(false))
    })
    if (probe) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { url, process: child }
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
    ['sync on', { enabled: true }],
    ['sync on, keepUntilAcknowledged', { enabled: true, keepUntilAcknowledged: true }],
  ]
  const results = new Map<string, number[]>()
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, sync] of modes) {
        const rate = await run(redis.url, sync, `bench-users-${round}-${name.replace(/\W+/g, '-')}`)
        results.set(name, [...(results.get(name) ?? []), rate])
      }
    }
  } finally {
    redis.process?.kill()
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
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
