import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { describe, expect, it, onTestFinished } from 'vitest'
import { WebSocket } from 'ws'
import { MeshServer, type Connection, type Handshake, type MeshServerOptions } from 'meshkit/server'
import { Subprotocol } from '../src/shared/protocol.js'
import { connectClient, deferred, recordingLogger, startServer, urlOf } from './support/harness.js'
import { within } from './support/wire.js'

interface UpgradeOutcome {
  status: number
  socket: WebSocket
}

/** Opens a WebSocket as a browser on `origin` would (or with no Origin) and resolves with the HTTP status: 101 when accepted. */
async function upgrade(url: string, options: { origin?: string; headers?: Record<string, string> } = {}): Promise<UpgradeOutcome> {
  const socket = new WebSocket(url, [Subprotocol.msgpack], options)
  socket.on('error', () => {})
  onTestFinished(() => socket.terminate())
  const status = await new Promise<number>((resolve) => {
    socket.once('upgrade', (response: IncomingMessage) => resolve(response.statusCode ?? 0))
    socket.once('unexpected-response', (request: { destroy(): void }, response: IncomingMessage) => {
      request.destroy()
      resolve(response.statusCode ?? 0)
    })
  })
  return { status, socket }
}

/** A server whose `authenticate` counts its calls and accepts everyone. */
async function countingServer(options: MeshServerOptions = {}): Promise<{ server: MeshServer; authenticated: () => number }> {
  let calls = 0
  const server = await startServer({
    ...options,
    authenticate: () => {
      calls++
      return { id: `user-${calls}` }
    },
  })
  return { server, authenticated: () => calls }
}

async function userHttpServer(listener?: (request: IncomingMessage, response: import('node:http').ServerResponse) => void): Promise<HttpServer> {
  const http = createServer(listener ?? ((_request, response) => response.end('user handler')))
  onTestFinished(async () => {
    http.closeAllConnections()
    if (http.listening) await new Promise<void>((resolve) => http.close(() => resolve()))
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  return http
}

describe('the origin check', () => {
  it('by default accepts no Origin and the same origin, and refuses other origins with 403 before authenticate runs', async () => {
    const { server, authenticated } = await countingServer()
    const url = urlOf(server)
    expect((await upgrade(url)).status).toBe(101)
    expect((await upgrade(url, { origin: `http://127.0.0.1:${server.port}` })).status).toBe(101)
    expect(authenticated()).toBe(2)

    for (const origin of ['https://evil.example', `http://127.0.0.1:${server.port + 1}`, `http://localhost:${server.port}`, 'null']) {
      expect((await upgrade(url, { origin })).status, origin).toBe(403)
    }
    expect(authenticated()).toBe(2)
  })

  it('compares the origin with the Host header, ignoring an explicit default port', async () => {
    const { server } = await countingServer()
    const url = urlOf(server)
    expect((await upgrade(url, { origin: 'https://app.example.com', headers: { host: 'app.example.com' } })).status).toBe(101)
    expect((await upgrade(url, { origin: 'https://app.example.com', headers: { host: 'App.Example.com:443' } })).status).toBe(101)
    expect((await upgrade(url, { origin: 'https://app.example.com', headers: { host: 'app.example.com:8443' } })).status).toBe(403)
    expect((await upgrade(url, { origin: 'https://example.com', headers: { host: 'app.example.com' } })).status).toBe(403)
  })

  it('accepts the listed origins: exact, wildcards for whole labels, RegExps; scheme and port must match', async () => {
    const { server, authenticated } = await countingServer({
      allowedOrigins: ['https://app.example.com', 'https://*.example.org', 'http://localhost:3000', /^https:\/\/preview-\d+\.example\.net$/g],
    })
    const url = urlOf(server)
    const accepted = ['https://app.example.com', 'https://a.example.org', 'https://a.b.example.org', 'http://localhost:3000', 'https://preview-1.example.net', 'https://preview-1.example.net']
    for (const origin of accepted) expect((await upgrade(url, { origin })).status, origin).toBe(101)
    expect((await upgrade(url)).status).toBe(101)
    const callsAfterAccepted = authenticated()
    expect(callsAfterAccepted).toBe(accepted.length + 1)

    const refused = [
      `http://127.0.0.1:${server.port}`, // same origin no longer counts once a list is given
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://example.org',
      'https://evil-example.org',
      'https://a.example.org.evil.net',
      'https://aexample.org',
      'http://localhost:3001',
      'https://preview-x.example.net',
      'null',
    ]
    for (const origin of refused) expect((await upgrade(url, { origin })).status, origin).toBe(403)
    expect(authenticated()).toBe(callsAfterAccepted)
  })

  it('lets a function decide, with the origin (undefined without one) and the request; a throw refuses and is logged', async () => {
    const seen: Array<string | undefined> = []
    const { logger, entries } = recordingLogger()
    const { server, authenticated } = await countingServer({
      logger,
      allowedOrigins: (origin, request) => {
        seen.push(origin)
        if (origin === 'https://broken.example') throw new Error('bug in the check')
        return origin === undefined || (origin === 'https://ok.example' && request.url === '/')
      },
    })
    const url = urlOf(server)
    expect((await upgrade(url, { origin: 'https://ok.example' })).status).toBe(101)
    expect((await upgrade(url)).status).toBe(101)
    expect((await upgrade(url, { origin: 'https://other.example' })).status).toBe(403)
    expect((await upgrade(url, { origin: 'https://broken.example' })).status).toBe(403)
    expect(seen).toEqual(['https://ok.example', undefined, 'https://other.example', 'https://broken.example'])
    expect(authenticated()).toBe(2)
    expect(entries.some((entry) => entry.level === 'error' && (entry.details as { origin?: string }).origin === 'https://broken.example')).toBe(true)
  })

  it("['*'] accepts any origin; [] accepts only upgrades without one", async () => {
    const any = await startServer({ allowedOrigins: ['*'] })
    expect((await upgrade(urlOf(any), { origin: 'https://anything.example' })).status).toBe(101)
    const none = await startServer({ allowedOrigins: [] })
    expect((await upgrade(urlOf(none), { origin: `http://127.0.0.1:${none.port}` })).status).toBe(403)
    expect((await upgrade(urlOf(none))).status).toBe(101)
  })

  it('refuses malformed allowedOrigins at construction', () => {
    const bad: unknown[] = ['https://app.example.com', [42], ['app.example.com'], ['https://example.com/path'], ['https://app-*.example.com'], ['https://example.com:*'], { origin: 'x' }]
    for (const allowedOrigins of bad) {
      expect(() => new MeshServer({ allowedOrigins: allowedOrigins as never }), JSON.stringify(allowedOrigins)).toThrow(TypeError)
    }
  })
})

describe('maxConnections', () => {
  it('refuses upgrades beyond it with 503 before authenticate runs, counting upgrades still authenticating, and accepts again once one closes', async () => {
    const gate = deferred<void>()
    const waiting = deferred<void>()
    let calls = 0
    const { logger, entries } = recordingLogger()
    const server = await startServer({
      maxConnections: 2,
      logger,
      authenticate: async () => {
        calls++
        if (calls === 2) {
          waiting.resolve()
          await gate.promise
        }
        return { id: `user-${calls}` }
      },
    })
    const first = await connectClient(server)
    // The second upgrade waits in authenticate: it already holds the last place.
    const second = upgrade(urlOf(server))
    await within(waiting.promise, 5_000, 'the second authentication')
    expect((await upgrade(urlOf(server))).status).toBe(503)
    expect(calls).toBe(2)
    expect(entries.filter((entry) => entry.level === 'warn' && (entry.details as { maxConnections?: number }).maxConnections === 2)).toHaveLength(1)

    gate.resolve()
    expect((await second).status).toBe(101)
    expect((await upgrade(urlOf(server))).status).toBe(503)
    expect(calls).toBe(2)

    const gone = deferred<Connection>()
    server.onDisconnection((connection) => gone.resolve(connection))
    first.close()
    await within(gone.promise, 5_000, 'the first connection to go')
    expect((await upgrade(urlOf(server))).status).toBe(101)
    expect(calls).toBe(3)
  })

  it('refuses bad values at construction', () => {
    for (const maxConnections of [0, -1, 1.5, Number.NaN, '10']) {
      expect(() => new MeshServer({ maxConnections: maxConnections as number }), String(maxConnections)).toThrow(RangeError)
    }
  })
})

describe('connection.handshake', () => {
  it('gives listeners and handlers the upgrade headers, the parsed query and the address, frozen, also after the close', async () => {
    const connected = deferred<Handshake>()
    const disconnected = deferred<Handshake>()
    const server = await startServer({}, (server) => {
      server.onConnection((connection) => connected.resolve(connection.handshake))
      server.onDisconnection((connection) => disconnected.resolve(connection.handshake))
      server.registerCommand('handshake', (ctx) => {
        const { headers, query, address } = ctx.connection.handshake
        return { app: headers['x-app'], cookie: headers.cookie, query: { ...query }, address }
      })
    })
    const socket = new WebSocket(`${urlOf(server)}?token=abc&tag=a&tag=b&__proto__=x`, [Subprotocol.json], { headers: { 'X-App': 'demo', Cookie: 'session=s1' } })
    socket.on('error', () => {})
    onTestFinished(() => socket.terminate())
    const handshake = await within(connected.promise, 5_000, 'onConnection')
    expect(handshake.headers['x-app']).toBe('demo')
    expect(handshake.headers.cookie).toBe('session=s1')
    expect(handshake.headers.host).toBe(`127.0.0.1:${server.port}`)
    expect(handshake.query.token).toBe('abc')
    expect(handshake.query.tag).toEqual(['a', 'b'])
    // No prototype: a query key such as __proto__ is plain data.
    expect(Object.getPrototypeOf(handshake.query)).toBe(null)
    expect(handshake.query.__proto__).toBe('x')
    expect(handshake.address).toBe('127.0.0.1')
    expect(Object.isFrozen(handshake) && Object.isFrozen(handshake.headers) && Object.isFrozen(handshake.query)).toBe(true)

    const hello = await once(socket, 'message')
    expect(JSON.parse(String(hello[0]))[0]).toBe(0)
    socket.send(JSON.stringify([1, 1, 'handshake', null]))
    const [reply] = await once(socket, 'message')
    // JSON.parse, unlike an object literal, makes "__proto__" an own key.
    const query = JSON.parse('{"token":"abc","tag":["a","b"],"__proto__":"x"}') as unknown
    expect(JSON.parse(String(reply))).toEqual([2, 1, { app: 'demo', cookie: 'session=s1', query, address: '127.0.0.1' }])

    socket.close()
    expect((await within(disconnected.promise, 5_000, 'onDisconnection')).headers['x-app']).toBe('demo')
  })

  it('keeps the peer address as remoteAddress and handshake.address, after the close too, and equal header values from different clients', async () => {
    const server = await startServer()
    const disconnected = deferred<Connection>()
    server.onDisconnection((connection) => disconnected.resolve(connection))
    const first = await connectClient(server)
    const second = await connectClient(server)
    const [a, b] = [server.connections.get(first.id!)!, server.connections.get(second.id!)!]
    expect(a.remoteAddress).toBe('127.0.0.1')
    expect(a.handshake.address).toBe('127.0.0.1')
    expect(b.handshake.headers.host).toBe(a.handshake.headers.host)
    expect(b.handshake.headers['sec-websocket-protocol']).toBe(a.handshake.headers['sec-websocket-protocol'])
    await first.close()
    const closed = await within(disconnected.promise, 5_000, 'onDisconnection')
    expect(closed.remoteAddress).toBe('127.0.0.1')
  })

  it('gives an empty query without a query string, shared rather than one per connection', async () => {
    const server = await startServer()
    const first = await connectClient(server)
    const second = await connectClient(`${urlOf(server)}?`)
    const [a, b] = [server.connections.get(first.id!)!, server.connections.get(second.id!)!]
    expect(a.handshake.query).toEqual({})
    expect(a.handshake.query).toBe(b.handshake.query)
  })
})

describe('an upgrade to a path nobody serves, on a server of the user\'s', () => {
  it('is answered 404 instead of left hanging, and the served path still works', async () => {
    const http = await userHttpServer()
    const mesh = new MeshServer({ server: http, path: '/ws' })
    onTestFinished(() => mesh.close())
    await mesh.ready()
    const base = `ws://127.0.0.1:${mesh.port}`
    expect((await within(upgrade(`${base}/elsewhere`), 3_000, 'the answer to a wrong path')).status).toBe(404)
    expect((await upgrade(`${base}/ws`)).status).toBe(101)
  })

  it("is left to the user's own upgrade listener when there is one", async () => {
    const http = await userHttpServer()
    http.on('upgrade', (request: IncomingMessage, socket) => {
      if (request.url === '/mine') socket.end('HTTP/1.1 418 I am a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    })
    const mesh = new MeshServer({ server: http, path: '/ws' })
    onTestFinished(() => mesh.close())
    await mesh.ready()
    expect((await upgrade(`ws://127.0.0.1:${mesh.port}/mine`)).status).toBe(418)
  })

  it('is answered 404 when several meshkit servers share the HTTP server, none on that path', async () => {
    const http = await userHttpServer()
    const a = new MeshServer({ server: http, path: '/a' })
    const b = new MeshServer({ server: http, path: '/b' })
    onTestFinished(async () => {
      await Promise.all([a.close(), b.close()])
    })
    await Promise.all([a.ready(), b.ready()])
    const base = `ws://127.0.0.1:${a.port}`
    expect((await within(upgrade(`${base}/c`), 3_000, 'the answer to a path neither serves')).status).toBe(404)
    const onA = await connectClient(`${base}/a`, { shouldReconnect: false })
    const onB = await connectClient(`${base}/b`, { shouldReconnect: false })
    expect([a.connections.has(onA.id!), b.connections.has(onB.id!)]).toEqual([true, true])
  })
})
