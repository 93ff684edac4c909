import { once } from 'node:events'
import { createServer, type IncomingMessage } from 'node:http'
import { describe, expect, it, onTestFinished } from 'vitest'
import { WebSocket } from 'ws'
import { ErrorCode, MeshServer, type Connection, type Logger } from 'meshkit/server'
import { Subprotocol } from '../src/shared/protocol.js'
import { connectClient, deferred, nextEvent, startServer, urlOf, waitFor } from './support/harness.js'
import { httpGet, openNonReadingWebSocket, within } from './support/wire.js'

function withEcho(server: MeshServer): MeshServer {
  server.registerCommand('echo', (ctx) => ctx.payload)
  return server
}

describe('listening', () => {
  it('port 0 gives a real port once ready', async () => {
    const server = withEcho(await startServer({ port: 0 }))
    expect(server.port).toBeGreaterThan(0)
    const client = await connectClient(`ws://127.0.0.1:${server.port}`)
    expect(await client.command('echo', 'hi')).toBe('hi')
  })

  it('ready() rejects with EADDRINUSE when the port is taken, and the holder keeps serving', async () => {
    const holder = withEcho(await startServer())
    const second = new MeshServer({ host: '127.0.0.1', port: holder.port })
    onTestFinished(() => second.close())
    await expect(second.ready()).rejects.toMatchObject({ code: 'EADDRINUSE' })
    await second.close()
    const client = await connectClient(holder)
    expect(await client.command('echo', 1)).toBe(1)
  })
})

describe('the server option', () => {
  it('attaches to an existing http server on a path and leaves that server open on close()', async () => {
    const http = createServer((_request, response) => response.end('user handler'))
    onTestFinished(async () => {
      http.closeAllConnections()
      if (http.listening) await new Promise<void>((resolve) => http.close(() => resolve()))
    })
    // Created before the http server listens: ready() waits for it.
    const mesh = withEcho(new MeshServer({ server: http, path: '/ws' }))
    onTestFinished(() => mesh.close())
    http.listen(0, '127.0.0.1')
    await within(mesh.ready(), 5_000, 'ready() on an attached server')
    expect(mesh.port).toBeGreaterThan(0)

    const client = await connectClient(urlOf(mesh, '/ws'), { shouldReconnect: false, connectTimeout: 3_000 })
    expect(await client.command('echo', 'attached')).toBe('attached')
    const queried = await connectClient(urlOf(mesh, '/ws?token=abc'), { shouldReconnect: false, connectTimeout: 3_000 })
    expect(await queried.command('echo', 'query')).toBe('query')
    expect(await httpGet(`http://127.0.0.1:${mesh.port}/`)).toEqual({ status: 200, body: 'user handler' })

    const disconnected = nextEvent<{ code: number }>(client, 'disconnect')
    await mesh.close()
    expect((await disconnected).code).toBe(1001)
    expect(http.listening).toBe(true)
    expect(await httpGet(`http://127.0.0.1:${mesh.port}/after`)).toEqual({ status: 200, body: 'user handler' })

    http.closeAllConnections()
    await new Promise<void>((resolve, reject) => http.close((error) => (error ? reject(error) : resolve())))
    expect(http.listening).toBe(false)
  })

  it('refuses an upgrade on another path with 404 and answers plain HTTP with 426', async () => {
    const server = withEcho(await startServer({ path: '/ws' }))
    const socket = new WebSocket(urlOf(server, '/elsewhere'), [Subprotocol.msgpack])
    socket.on('error', () => {})
    onTestFinished(() => socket.terminate())
    const [request, response] = (await once(socket, 'unexpected-response')) as [{ destroy(): void }, IncomingMessage]
    expect(response.statusCode).toBe(404)
    request.destroy()

    expect((await httpGet(`http://127.0.0.1:${server.port}/ws`)).status).toBe(426)
    const client = await connectClient(urlOf(server, '/ws'))
    expect(await client.command('echo', 'right path')).toBe('right path')
  })
})

describe('close()', () => {
  it('says 1001 to every client, runs onDisconnection for each, is idempotent, and refuses new connections', async () => {
    const server = await startServer()
    const closedIds: string[] = []
    server.onDisconnection((connection) => {
      closedIds.push(connection.id)
    })
    const clients = [
      await connectClient(server, { shouldReconnect: false }),
      await connectClient(server, { shouldReconnect: false, codec: 'json' }),
    ]
    const ids = clients.map((client) => client.id)
    const url = urlOf(server)
    const disconnects = clients.map((client) => nextEvent<{ code: number }>(client, 'disconnect'))

    const first = server.close()
    const second = server.close()
    await within(Promise.all([first, second]), 5_000, 'close()')
    // close() resolves once the disconnection listeners have run.
    expect([...closedIds].sort()).toEqual([...ids].sort())
    await server.close()

    expect((await Promise.all(disconnects)).map((event) => event.code)).toEqual([1001, 1001])
    expect(server.connections.size).toBe(0)
    await expect(connectClient(url, { shouldReconnect: false })).rejects.toMatchObject({
      code: ErrorCode.CONNECTION_FAILED,
    })
  })
})

describe('close() during an upgrade', () => {
  it('refuses, with 503, an upgrade whose authentication was still deciding when close() began', async () => {
    const asked = deferred()
    const decided = deferred<{ id: string }>()
    const server = await startServer({
      authenticate: (request: IncomingMessage) => (request.url?.includes('late') ? (asked.resolve(), decided.promise) : { id: 'early' }),
    })
    // A client still connected keeps the shutdown waiting for its close handshake: the window in question.
    await connectClient(server, { shouldReconnect: false })
    const connected: string[] = []
    server.onConnection((connection) => {
      connected.push(connection.id)
    })
    const upgrade = openNonReadingWebSocket(server.port, '/?late')
    await asked.promise
    const closing = server.close()
    decided.resolve({ id: 'ada' })
    expect((await upgrade).statusLine).toMatch(/^HTTP\/1\.1 503 /)
    await within(closing, 5_000, 'close()')
    expect(connected).toEqual([])
  })
})

describe('close() with a silent peer', () => {
  it('cuts a peer that never answers the close handshake after closeTimeout', async () => {
    const server = await startServer({ closeTimeout: 200 })
    const announced = deferred<Connection>()
    server.onConnection((connection) => announced.resolve(connection))
    const gone = deferred<Connection>()
    server.onDisconnection((connection) => gone.resolve(connection))
    await openNonReadingWebSocket(server.port)
    const silent = await within(announced.promise, 5_000, 'onConnection for the silent peer')

    // ws itself would wait 30 s for the peer's close frame.
    await within(server.close(), 3_000, 'close() with a silent peer')
    expect((await within(gone.promise, 1_000, 'onDisconnection for the silent peer')).id).toBe(silent.id)
    expect(server.connections.size).toBe(0)
  })
})

describe('configuration', () => {
  it.each([
    ['a negative pingInterval', { pingInterval: -1 }],
    ['port 70000', { port: 70_000 }],
    ['a path without a leading slash', { path: 'ws' }],
    ['a zero maxPayload', { maxPayload: 0 }],
  ])('%s throws a RangeError at construction', (_, options) => {
    expect(() => new MeshServer({ host: '127.0.0.1', ...options })).toThrow(RangeError)
  })

  it('registerCommand refuses the reserved prefix, duplicates and non-functions, keeping what was registered', async () => {
    const server = withEcho(await startServer())
    expect(() => server.registerCommand('mesh/anything', () => 1)).toThrow(RangeError)
    expect(() => server.registerCommand('echo', () => 'replaced')).toThrow(RangeError)
    expect(() => server.registerCommand('nothing', 'not a function' as never)).toThrow(TypeError)
    const client = await connectClient(server)
    expect(await client.command('echo', 'original')).toBe('original')
    await expect(client.command('mesh/anything')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND })
    await expect(client.command('nothing')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND })
  })
})

describe('connection listeners', () => {
  it('listeners that throw or reject are logged and break nothing', async () => {
    const logged: Array<{ message: string; error: unknown }> = []
    const logger: Logger = {
      error: (message, details) => {
        logged.push({ message, error: details?.error })
      },
    }
    const server = withEcho(await startServer({ logger }))
    const thrown = [new Error('sync connect'), new Error('async connect'), new Error('sync gone'), new Error('async gone')]
    const seen: string[] = []
    server.onConnection(() => {
      throw thrown[0]
    })
    server.onConnection(async () => {
      throw thrown[1]
    })
    server.onConnection((connection) => {
      seen.push(`connect ${connection.id}`)
    })
    server.onDisconnection(() => {
      throw thrown[2]
    })
    server.onDisconnection(async () => {
      throw thrown[3]
    })
    const goneSeen = deferred<Connection>()
    server.onDisconnection((connection) => goneSeen.resolve(connection))

    const client = await connectClient(server)
    const id = client.id
    expect(await client.command('echo', 'reply')).toBe('reply')
    await waitFor(() => logged.length >= 2)
    expect(seen).toEqual([`connect ${id}`])

    await client.close()
    expect((await within(goneSeen.promise, 5_000, 'the last onDisconnection listener')).id).toBe(id)
    await waitFor(() => logged.length >= 4)
    expect(logged.map((entry) => entry.error)).toEqual(thrown)

    const next = await connectClient(server)
    expect(await next.command('echo', 'again')).toBe('again')
  })

  it('a logger that throws while reporting a failing listener ends nothing: the process and the server carry on', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason)
    }
    process.on('unhandledRejection', onUnhandled)
    onTestFinished(() => {
      process.off('unhandledRejection', onUnhandled)
    })
    const attempts: string[] = []
    const logger: Logger = {
      error: (message) => {
        attempts.push(message)
        throw new Error('the log stream is closed')
      },
    }
    const server = withEcho(await startServer({ logger }))
    server.onDisconnection(() => {
      throw new Error('a listener bug')
    })
    const client = await connectClient(server)
    await client.close()
    await waitFor(() => attempts.length === 1)
    // A later turn: an unhandled rejection from the cleanup would have been reported by now.
    await new Promise((resolve) => setImmediate(resolve))
    await server.close()
    expect(unhandled).toEqual([])
    expect(attempts).toHaveLength(1)
  })
})

describe('events', () => {
  it('broadcast reaches every client on both codecs; connection.send reaches only its own', async () => {
    const server = await startServer()
    const binary = await connectClient(server)
    const text = await connectClient(server, { codec: 'json' })
    const payload = { n: 1, list: ['a', 'b'], nested: { ok: true } }

    const received = [nextEvent(binary, 'news'), nextEvent(text, 'news')]
    await server.broadcast('news', payload)
    expect(await Promise.all(received)).toEqual([payload, payload])

    const privately: unknown[] = []
    text.on('private', (value) => privately.push(value))
    const toBinary = nextEvent(binary, 'private')
    const fence = nextEvent(text, 'fence')
    const connection = server.connections.get(binary.id as string)
    expect(connection?.send('private', 'for binary only')).toBe(true)
    // Had the private event gone to the json client too, it would arrive there before this.
    await server.broadcast('fence')
    expect(await toBinary).toBe('for binary only')
    await fence
    expect(privately).toEqual([])
  })
})
