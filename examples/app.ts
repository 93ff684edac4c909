// The example application behind `npm start`: the commands examples/client.ts calls, and
// the chat demo (examples/demo/) served on the same port as the WebSocket endpoint.
import { createServer } from 'node:http'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { MeshError, MeshServer, type Middleware } from 'meshkit/server'
import { exampleApi, type ExampleApi } from './api.js'
import { demoFiles, serveFiles } from './demo/serve.js'

export interface ExampleServerOptions {
  /** Port for HTTP and WebSocket; 0 picks a free one. @default 4000 */
  port?: number
  /** Host to bind. @default all interfaces */
  host?: string
  /** A Redis URL: servers sharing one act as one. @default the in-memory store */
  redis?: string
  /** Key and topic namespace in Redis. @default meshkit's */
  namespace?: string
  /** Where the browser builds (client.js, client-json.js) are. @default dist/browser */
  clientDir?: string
  /** Passed to MeshServer: how long a closed connection's presence outlives it. @default 5000 */
  presenceLeaveDelay?: number
}

export interface ExampleServer {
  server: MeshServer<ExampleApi>
  port: number
  close(): Promise<void>
}

interface User {
  name: string
}

/** Chat messages kept per room, sent as history to whoever joins. */
const HISTORY = 50

export async function startExampleServer(options: ExampleServerOptions = {}): Promise<ExampleServer> {
  const clientDir = options.clientDir ?? fileURLToPath(new URL('../dist/browser/', import.meta.url))
  const files = serveFiles(demoFiles(clientDir))
  // meshkit's own routes first (/healthz, /readyz, /metrics), then the demo's files.
  let meshRoutes: ReturnType<MeshServer['httpHandler']> | undefined
  const http = createServer((request, response) => {
    if (!meshRoutes?.(request, response)) files(request, response)
  })
  const server = new MeshServer({
    server: http,
    // Types every command, event, message and channel below, and validates payloads.
    api: exampleApi,
    redis: options.redis,
    namespace: options.namespace,
    // Prometheus metrics at /metrics (prom-client, an optional peer dependency).
    metrics: true,
    // Quick enough for the page's latency meter to move while someone watches it.
    latencyInterval: 2_000,
    presenceLeaveDelay: options.presenceLeaveDelay,
  })
  meshRoutes = server.httpHandler()
  registerExampleCommands(server)
  registerChat(server)

  http.listen(options.port ?? 4000, options.host)
  await once(http, 'listening')
  await server.ready()
  const address = http.address()
  return {
    server,
    port: typeof address === 'object' && address ? address.port : 0,
    async close() {
      await server.close()
      // Browsers keep idle HTTP connections open; they would hold close() for minutes.
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}

/** What examples/client.ts walks through: commands, middleware, events, client messages. */
function registerExampleCommands(server: MeshServer<ExampleApi>): void {
  // Global middleware: runs before every command. Here it reads who is calling. The
  // server that addMiddleware returns is typed with the field it adds (`ctx.user`).
  const identify: Middleware<{ user?: User }> = (ctx) => {
    const token = (ctx.payload as { token?: unknown } | undefined)?.token
    if (typeof token === 'string' && token.length > 0) ctx.user = { name: token }
  }
  const app = server.addMiddleware(identify)

  // Per-command middleware: after it, the handler's `ctx.user` is a User, never undefined.
  const requireUser: Middleware<{ user: User }> = (ctx) => {
    if (!ctx.user) throw new MeshError('UNAUTHORIZED', 'Send a token first')
  }
  server.registerCommand('echo', (ctx) => ctx.payload)
  app.registerCommand('whoami', (ctx) => ctx.user.name, [requireUser])
  server.registerCommand('shout', async (ctx) => {
    const text = ctx.payload.text.toUpperCase()
    await server.broadcast('shouted', { by: ctx.connection.id, text })
    return text
  })

  // Rooms the server manages; delivery reaches members on every instance sharing Redis.
  server.exposeRoom(/^lobby/)
  server.registerCommand('join', async (ctx) => {
    const { room } = ctx.payload
    await server.addToRoom(room, ctx.connection)
    await server.broadcastRoomExclude(room, 'joined', { id: ctx.connection.id, room }, ctx.connection)
    return server.getRoomMembers(room)
  })

  // Client messages (client.send): fire-and-forget, no reply; global middleware runs first
  // (ctx.message is set). This handler answers with an event anyway, to show the round trip.
  app.onMessage('note', (ctx) => {
    ctx.connection.send('noted', { text: ctx.data, by: ctx.user?.name ?? 'anonymous' })
  })
  server.onConnection((connection) => {
    connection.send('welcome', { id: connection.id })
  })
}

/**
 * The chat: a room `general` is the presence room `room:general` (who is here, who is
 * typing), which clients join themselves, and the channel `chat:general` (the
 * messages, the newest 50 kept), which they subscribe to; `say` writes to it.
 */
function registerChat(server: MeshServer<ExampleApi>): void {
  server.exposeRoom(/^room:[a-z0-9-]{1,24}$/, undefined, { presence: true })
  server.exposeChannel(/^chat:[a-z0-9-]{1,24}$/)
  // The payload was checked against the schema in examples/api.ts before this runs.
  server.registerCommand('say', async (ctx) => {
    const { room, name, text } = ctx.payload
    const message = { from: ctx.connection.id, name: name || 'anonymous', text, at: Date.now() }
    return server.writeChannel(`chat:${room}`, message, HISTORY)
  })
}
