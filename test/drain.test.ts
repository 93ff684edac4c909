import { createServer, request as httpRequest } from 'node:http'
import { once } from 'node:events'
import { connect as tcpConnect } from 'node:net'
import { WebSocket } from 'ws'
import { describe, expect, it, onTestFinished } from 'vitest'
import { CloseCode, FrameType, Subprotocol } from '../src/shared/protocol.js'
import { ErrorCode } from 'meshkit'
import { connectClient, deferred, nextEvent, RawClient, recordingLogger, rejectionOf, startServer, urlOf, waitFor } from './support/harness.js'

function readyz(port: number): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/readyz' }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body += chunk))
      response.on('end', () => resolve({ status: response.statusCode!, body: JSON.parse(body) }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The HTTP status and `Retry-After` an upgrade is refused with. */
function refusedUpgrade(url: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, [Subprotocol.msgpack])
    socket.on('unexpected-response', (_request, response) => {
      resolve({ status: response.statusCode!, retryAfter: response.headers['retry-after'] as string | undefined })
      socket.terminate()
    })
    socket.on('open', () => {
      socket.terminate()
      reject(new Error('the upgrade was accepted'))
    })
    socket.on('error', () => {})
  })
}

describe('close({ drain })', () => {
  it('turns readiness 503 (draining) and refuses upgrades with 503 and Retry-After at once', async () => {
    const release = deferred<string>()
    const started = deferred()
    const server = await startServer({}, (s) =>
      s.registerCommand('hold', async () => {
        started.resolve()
        return release.promise
      }),
    )
    const raw = await RawClient.open(server)
    await raw.hello()
    raw.send([FrameType.REQUEST, 1, 'hold', null])
    await started.promise
    const closing = server.close({ drain: 2_000 })
    expect(server.readiness).toEqual({ ready: false, reasons: ['draining'] })
    expect(await readyz(server.port)).toEqual({ status: 503, body: { ready: false, reasons: ['draining'] } })
    expect(await refusedUpgrade(urlOf(server))).toEqual({ status: 503, retryAfter: '1' })
    release.resolve('done')
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, 'done'])
    expect(await raw.closed).toEqual({ code: CloseCode.SERVICE_RESTART, reason: 'draining' })
    await closing
    expect(server.readiness.reasons).toEqual(['closed'])
  })

  it('lets a command outlast its connection\'s turn, runs no request arriving after it, and the client sends that one again elsewhere', async () => {
    const release = deferred<string>()
    const started = deferred()
    const marker = deferred()
    const ran: string[] = []
    const configure = (name: string) => (s: import('meshkit/server').MeshServer) => {
      s.registerCommand('slow', async () => {
        started.resolve()
        return release.promise
      })
      s.registerCommand('count', (ctx) => {
        ran.push(`${name}:${String(ctx.payload)}`)
        return name
      })
      s.onMessage('marker', () => marker.resolve())
    }
    const a = await startServer({}, configure('a'))
    const b = await startServer({}, configure('b'))
    const client = await connectClient([urlOf(a), urlOf(b)])
    const order: string[] = []
    client.on('disconnect', ({ code }) => order.push(`disconnect ${code}`))
    const slow = client.command('slow').then((value) => {
      order.push(`slow ${String(value)}`)
      return value
    })
    await started.promise
    const closing = a.close({ drain: 1_000 })
    const connection = a.connections.get(client.id!)!
    await waitFor(() => connection.draining)
    const counted = client.command('count', 'late')
    // Messages still run on a draining connection, in order: once this one is in, the request before it was read.
    client.send('marker')
    await marker.promise
    expect(ran).toEqual([])
    const reconnected = nextEvent(client, 'reconnect')
    release.resolve('finished')
    expect(await slow).toBe('finished')
    expect(await counted).toBe('b')
    await reconnected
    expect(order).toEqual(['slow finished', `disconnect ${CloseCode.SERVICE_RESTART}`])
    expect(ran).toEqual(['b:late'])
    expect(b.connections.has(client.id!)).toBe(true)
    await closing
  })

  it('closes a connection still running a command at the window\'s end with 1001, and logs how many', async () => {
    const { logger, entries } = recordingLogger()
    const started = deferred()
    const server = await startServer({ logger }, (s) =>
      s.registerCommand('forever', () => {
        started.resolve()
        return new Promise(() => {})
      }),
    )
    const raw = await RawClient.open(server)
    await raw.hello()
    const idle = await RawClient.open(server)
    await idle.hello()
    raw.send([FrameType.REQUEST, 1, 'forever', null])
    await started.promise
    await server.close({ drain: 300 })
    expect((await raw.closed).code).toBe(CloseCode.GOING_AWAY)
    expect((await idle.closed).code).toBe(CloseCode.SERVICE_RESTART)
    const cut = entries.filter((entry) => entry.level === 'warn' && entry.details?.connections !== undefined)
    expect(cut.map((entry) => entry.details)).toEqual([{ connections: 1, drain: 300 }])
  })

  it('still rejects unanswered requests with CONNECTION_CLOSED on a 1001 close (no drain)', async () => {
    const started = deferred()
    const server = await startServer({}, (s) =>
      s.registerCommand('forever', () => {
        started.resolve()
        return new Promise(() => {})
      }),
    )
    const client = await connectClient(server, { shouldReconnect: false })
    const pending = client.command('forever')
    await started.promise
    void server.close()
    expect((await rejectionOf(pending)).code).toBe(ErrorCode.CONNECTION_CLOSED)
  })

  it('a client closed with 1012 reconnects without its backoff delay', async () => {
    const server = await startServer()
    // A first backoff of up to a minute: a reconnect within 2 s is the 1012 path's (0–100 ms).
    const client = await connectClient(server, { reconnectInterval: 60_000, maxReconnectInterval: 60_000 })
    const reconnected = nextEvent(client, 'reconnect', 2_000)
    server.connections.get(client.id!)!.close(CloseCode.SERVICE_RESTART, 'draining')
    expect(await reconnected).toEqual({ attempt: 1 })
  })

  it('on a server of the user\'s, upgrades during close() get 503, not the user\'s request handler', async () => {
    const http = createServer((_request, response) => response.end('page'))
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => http.close(() => resolve())))
    const server = await startServer({ server: http, closeTimeout: 1_000 })
    const port = (http.address() as { port: number }).port
    // A peer that never answers the close handshake holds close() for closeTimeout.
    const silent = tcpConnect(port, '127.0.0.1')
    onTestFinished(() => void silent.destroy())
    silent.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    await waitFor(() => server.connections.size === 1)
    const closing = server.close()
    expect(await refusedUpgrade(`ws://127.0.0.1:${port}/`)).toEqual({ status: 503, retryAfter: '1' })
    await closing
  })

  it('with no connections, a drain ends at once', async () => {
    const server = await startServer()
    const start = performance.now()
    await server.close({ drain: 5_000 })
    expect(performance.now() - start).toBeLessThan(2_000)
    expect(server.readiness.reasons).toEqual(['closed'])
  })
})
