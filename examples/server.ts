// The example server: `npm start`. Runs on the embedded in-memory store, no Redis needed.
// With REDIS_URL set, start several (PORT=4001, PORT=4002...) and they act as one server.
import { MeshError, MeshServer, type MeshContext } from 'meshkit/server'

interface User {
  name: string
}

const port = Number(process.env.PORT ?? 4000)
const server = new MeshServer({ port, redis: process.env.REDIS_URL })

// Global middleware: runs before every command. Here it reads who is calling.
server.addMiddleware((ctx) => {
  const token = (ctx.payload as { token?: unknown } | undefined)?.token
  if (typeof token === 'string' && token.length > 0) ctx.user = { name: token } satisfies User
})

function requireUser(ctx: MeshContext): void {
  if (!ctx.user) throw new MeshError('UNAUTHORIZED', 'Send a token first')
}

server.registerCommand('echo', (ctx) => ctx.payload)
server.registerCommand('whoami', (ctx) => (ctx.user as User).name, [requireUser])
server.registerCommand('shout', async (ctx: MeshContext<{ text: string }>) => {
  const text = String(ctx.payload?.text ?? '').toUpperCase()
  await server.broadcast('shouted', { by: ctx.connection.id, text })
  return text
})

// Rooms and delivery work across instances when they share Redis.
server.registerCommand('join', async (ctx: MeshContext<{ room: string }>) => {
  const room = String(ctx.payload?.room ?? 'lobby')
  await server.addToRoom(room, ctx.connection)
  await server.broadcastRoomExclude(room, 'joined', { id: ctx.connection.id, room }, ctx.connection)
  return server.getRoomMembers(room)
})

// Channels: clients subscribe to chat:* themselves; history keeps the newest 50.
server.exposeChannel(/^chat:[\w-]+$/)
server.exposeRoom(/^lobby/)
server.registerCommand('say', async (ctx: MeshContext<{ channel: string; text: string }>) => {
  const { channel, text } = ctx.payload ?? { channel: '', text: '' }
  return server.writeChannel(channel, { from: ctx.connection.id, text: String(text) }, 50)
})

// Client messages (client.send): fire-and-forget, no reply; global middleware runs first
// (ctx.message is set). This handler answers with an event anyway, to show the round trip.
server.onMessage('note', (ctx) => {
  ctx.connection.send('noted', { text: String(ctx.data), by: ctx.user ? (ctx.user as User).name : 'anonymous' })
})

server.onConnection((connection) => {
  console.log(`+ ${connection.id} (${connection.codec.name})`)
  connection.send('welcome', { id: connection.id })
})
server.onDisconnection((connection) => console.log(`- ${connection.id}`))

await server.ready()
console.log(`meshkit example server on ws://localhost:${server.port}`)
console.log(`try: npx tsx examples/client.ts   (or any WebSocket tool with subprotocol meshkit.json)`)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void server.close().then(() => process.exit(0))
  })
}
