// The Portal example: client traffic handled in another process. Needs Redis:
//   REDIS_URL=redis://localhost:6379 npx tsx examples/portal.ts
// It runs a portal, a server with portals enabled and a client in this one file, to stay
// runnable on its own; in production the portal is a process of its own (any number of
// them, on any machine that reaches the Redis), and the server has no code for what the
// portal handles.
import { MeshClient } from 'meshkit/client'
import { MeshError, MeshServer, Portal, type PortalContext } from 'meshkit/server'

const redis = process.env.REDIS_URL ?? 'redis://localhost:6379'
const namespace = process.env.NAMESPACE ?? 'meshkit-portal-example'

// The portal: reads the servers' event streams as a member of its group ('default').
// Every group gets every event; within a group, one portal handles each.
const portal = new Portal(redis, { namespace })
const seen = new Set<string>()
portal.onConnection((ctx) => {
  console.log(`portal: ${ctx.connection.id} connected (query ${JSON.stringify(ctx.connection.handshake?.query)})`)
})
portal.onMessage('chat', async (ctx: PortalContext<{ text: string }>) => {
  // Delivery is at least once: an event handled just before a crash comes again with the
  // same eventId, so a handler with side effects drops repeats by it.
  if (seen.has(ctx.eventId)) return
  seen.add(ctx.eventId)
  // Answers that one connection, on whichever instance holds it.
  await ctx.connection.send('chat-reply', { text: String(ctx.data?.text).toUpperCase(), eventId: ctx.eventId })
})
let left!: () => void
const disconnected = new Promise<void>((resolve) => (left = resolve))
portal.onDisconnection((ctx) => {
  console.log(`portal: ${ctx.connection.id} disconnected (${ctx.code})`)
  left()
})
// A command no server handles: servers forward it to a live portal that registered it.
portal.registerCommand<{ a: number; b: number }>('add', (ctx) => {
  const { a, b } = ctx.payload ?? { a: NaN, b: NaN }
  if (typeof a !== 'number' || typeof b !== 'number') throw new MeshError('BAD_REQUEST', 'a and b must be numbers')
  return a + b
})
// Portals and servers may start in any order: once ready() resolves, the servers forward `add`.
await portal.ready()

const server = new MeshServer({ port: 0, redis, namespace, portal: { enabled: true } })
await server.ready()

const client = new MeshClient(`ws://127.0.0.1:${server.port}/?from=example`)
const replied = new Promise<{ text: string }>((resolve) => client.once<{ text: string }>('chat-reply', resolve))
await client.connect()
client.send('chat', { text: 'hello, portal' })
console.log('chat → chat-reply:', (await replied).text)
console.log('add →', await client.command('add', { a: 2, b: 3 }))
try {
  await client.command('add', { a: 'two' })
} catch (error) {
  if (error instanceof MeshError) console.log(`add with a string → ${error.code}`)
}

await client.close()
await disconnected
await portal.close()
await server.close()
