import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { WebSocket } from 'ws'
import { ErrorCode, type MeshError } from 'meshkit'
import { MeshClient, type ConnectionFailure, type SocketLike } from 'meshkit/client'
import type { Connection } from 'meshkit/server'
import { fakeServer } from './support/fake-server.js'
import { connectClient, createClient, deferred, nextEvent, rejectionOf, startServer, urlOf } from './support/harness.js'

/** An HTTP server that refuses every upgrade with the status its path names (`/401`, `/503`...). */
async function refusingServer(): Promise<string> {
  const server = createServer()
  server.on('upgrade', (request: IncomingMessage, socket: Socket) => {
    const status = Number(request.url?.slice(1)) || 400
    socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A TCP server that accepts connections and never answers the upgrade. */
async function silentServer(): Promise<string> {
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => sockets.add(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  onTestFinished(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function failureOf(client: MeshClient): Promise<ConnectionFailure> {
  const error = await rejectionOf(client.connect())
  expect(error.code).toBe(ErrorCode.CONNECTION_FAILED)
  return error.data as ConnectionFailure
}

/**
 * A WebSocket that behaves like a browser's, on top of `ws`: no `terminate`, no
 * `on`, the cause of a failure hidden, and only `blob` and `arraybuffer` as binary
 * types (a browser warns on the console about any other value and ignores it).
 */
class BrowserLikeWebSocket implements SocketLike {
  static invalidBinaryTypes: string[] = []
  onopen: ((event: unknown) => void) | null = null
  onmessage: ((event: { data: unknown }) => void) | null = null
  onclose: ((event: { code: number; reason: string }) => void) | null = null
  onerror: ((event: unknown) => void) | null = null
  private type = 'blob'
  private readonly inner: WebSocket

  constructor(url: string, protocols?: string | string[]) {
    this.inner = new WebSocket(url, protocols)
    this.inner.binaryType = 'arraybuffer'
    this.inner.onopen = (event) => this.onopen?.(event)
    this.inner.onmessage = (event) => this.onmessage?.({ data: this.type === 'blob' && typeof event.data !== 'string' ? new Blob([event.data as ArrayBuffer]) : event.data })
    this.inner.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason })
    this.inner.onerror = () => this.onerror?.({ type: 'error' })
  }

  get binaryType(): string {
    return this.type
  }

  set binaryType(value: string) {
    if (value === 'blob' || value === 'arraybuffer') this.type = value
    else BrowserLikeWebSocket.invalidBinaryTypes.push(value)
  }

  get protocol(): string {
    return this.inner.protocol
  }

  get readyState(): number {
    return this.inner.readyState
  }

  get bufferedAmount(): number {
    return this.inner.bufferedAmount
  }

  send(data: Uint8Array | string): void {
    this.inner.send(data)
  }

  close(code?: number, reason?: string): void {
    this.inner.close(code, reason)
  }
}

describe('connection failures carry their cause', () => {
  it('gives the HTTP status of a refused upgrade', async () => {
    const url = await refusingServer()
    for (const status of [401, 403, 404, 503]) {
      expect(await failureOf(new MeshClient(`${url}/${status}`))).toEqual({ reason: 'http', status })
    }
  })

  it('gives the system error code for a closed port and an unknown host', async () => {
    const server = await startServer()
    const url = urlOf(server)
    await server.close()
    expect(await failureOf(new MeshClient(url))).toEqual({ reason: 'network', code: 'ECONNREFUSED' })
    expect(await failureOf(new MeshClient('ws://meshkit-test.invalid/'))).toEqual({ reason: 'network', code: 'ENOTFOUND' })
  })

  it('tells a timeout apart: no answer to the upgrade, and an upgrade without hello', async () => {
    expect(await failureOf(new MeshClient(await silentServer(), { connectTimeout: 100 }))).toEqual({ reason: 'timeout', timeout: 100 })
    const mute = await fakeServer(() => {})
    expect(await failureOf(new MeshClient(mute, { connectTimeout: 100 }))).toEqual({ reason: 'timeout', timeout: 100 })
  })

  it('gives the TLS error code of a certificate the client does not trust', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-tls-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '1'], { stdio: 'ignore' })
    const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const url = `wss://127.0.0.1:${(server.address() as AddressInfo).port}`
    expect(await failureOf(new MeshClient(url))).toEqual({ reason: 'network', code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
  })

  it('in a browser, where the platform hides the cause, reports the close code only', async () => {
    const url = await refusingServer()
    const client = new MeshClient(`${url}/401`, { WebSocket: BrowserLikeWebSocket })
    expect(await failureOf(client)).toMatchObject({ reason: 'closed', closeCode: 1006 })
  })
})

describe('refused while reconnecting', () => {
  /** A server that accepts the tokens in `valid`; others get 401, `banned` gets 403. */
  async function tokenServer(valid: Set<string>) {
    const seen: string[] = []
    const connected = deferred<Connection>()
    const server = await startServer({
      authenticate: (request: IncomingMessage) => {
        const token = new URL(request.url ?? '/', 'http://x').searchParams.get('token') ?? ''
        seen.push(token)
        if (token === 'banned') throw Object.assign(new Error('banned'), { status: 403 })
        return valid.has(token) ? { id: token } : null
      },
    })
    server.onConnection((connection) => connected.resolve(connection))
    return { server, seen, connected }
  }

  it('calls a url function before every attempt, so a reconnect carries a fresh token', async () => {
    const { server, seen, connected } = await tokenServer(new Set(['t1', 't2']))
    const tokens = ['t1', 't2']
    const client = createClient(async () => `${urlOf(server)}/?token=${tokens.shift()}`, { reconnectInterval: 1 })
    await client.connect()
    const reconnected = nextEvent(client, 'reconnect')
    ;(await connected.promise).close(4500, 'go away')
    await reconnected
    expect(seen).toEqual(['t1', 't2'])
    expect(client.url).toBe(`${urlOf(server)}/?token=t2`)
  })

  it('fails an attempt whose url function throws, and calls it again for the next one', async () => {
    const { server, connected } = await tokenServer(new Set(['t1', 't2']))
    const answers: Array<() => string> = [() => 't1', () => { throw new Error('token service down') }, () => 't2']
    const client = createClient(() => `${urlOf(server)}/?token=${answers.shift()!()}`, { reconnectInterval: 1 })
    await client.connect()
    const error = nextEvent<MeshError>(client, 'error')
    const reconnected = nextEvent<{ attempt: number }>(client, 'reconnect')
    ;(await connected.promise).close(4500, 'go away')
    expect((await error).data).toEqual({ reason: 'url' })
    expect((await reconnected).attempt).toBe(2)
  })

  it('refuses a url that is neither a string, a list nor a function', () => {
    expect(() => new MeshClient([] as string[])).toThrow(TypeError)
    expect(() => new MeshClient(42 as unknown as string)).toThrow(TypeError)
  })

  for (const [token, status] of [['expired', 401], ['banned', 403]] as const) {
    it(`stops the retries at a ${status} and says so in reconnectfailed`, async () => {
      const { server, seen, connected } = await tokenServer(new Set(['good']))
      const tokens = ['good', token, 'good']
      const client = createClient(() => `${urlOf(server)}/?token=${tokens.shift()}`, { reconnectInterval: 1 })
      await client.connect()
      const errors: MeshError[] = []
      client.on('error', (error) => errors.push(error))
      const failed = nextEvent<{ attempts: number; status?: number; error?: MeshError }>(client, 'reconnectfailed')
      const disconnected = nextEvent(client, 'disconnect')
      ;(await connected.promise).close(4500, 'go away')
      await disconnected
      // A connect() while reconnecting waits for it, and fails with its cause.
      const waiting = rejectionOf(client.connect())
      const event = await failed
      expect((await waiting).data).toEqual({ reason: 'http', status })
      expect(event.attempts).toBe(1)
      expect(event.status).toBe(status)
      expect(event.error?.data).toEqual({ reason: 'http', status })
      expect(errors.map((error) => [error.code, error.data])).toEqual([[ErrorCode.CONNECTION_FAILED, { reason: 'http', status }]])
      expect(seen).toEqual(['good', token])
      expect(client.state).toBe('closed')
    })
  }

  it('keeps retrying other failures, reporting each attempt as an error event', async () => {
    const refusing = await refusingServer()
    const { server, connected } = await tokenServer(new Set(['good']))
    const urls = [`${urlOf(server)}/?token=good`, `${refusing}/503`, `${refusing}/503`]
    const client = createClient(() => urls.shift() ?? `${refusing}/404`, { reconnectInterval: 1, maxReconnectAttempts: 3 })
    await client.connect()
    const errors: MeshError[] = []
    client.on('error', (error) => errors.push(error))
    const failed = nextEvent<{ attempts: number; status?: number }>(client, 'reconnectfailed')
    ;(await connected.promise).close(4500, 'go away')
    const event = await failed
    expect(event.attempts).toBe(3)
    expect(event.status).toBeUndefined()
    expect(errors.map((error) => (error.data as { status: number }).status)).toEqual([503, 503, 404])
  })
})

describe('browsers', () => {
  it('sets no binaryType a browser rejects, and works on array buffers', async () => {
    BrowserLikeWebSocket.invalidBinaryTypes = []
    const server = await startServer({}, (s) => s.registerCommand('echo', (ctx) => ctx.payload))
    const client = await connectClient(server, { WebSocket: BrowserLikeWebSocket })
    expect(await client.command('echo', { hello: 'browser' })).toEqual({ hello: 'browser' })
    expect(BrowserLikeWebSocket.invalidBinaryTypes).toEqual([])
  })
})

describe('application listeners that throw', () => {
  it('reports a server-event listener that throws as an error event; the others still run', async () => {
    const server = await startServer({}, (s) => s.registerCommand('notify', (ctx) => ctx.connection.send('news', ctx.payload)))
    const client = await connectClient(server)
    const received: unknown[] = []
    client.on('news', () => {
      throw new Error('listener bug')
    })
    client.on('news', (payload) => received.push(payload))
    const error = nextEvent<MeshError>(client, 'error')
    await client.command('notify', 1)
    expect((await error).code).toBe(ErrorCode.LISTENER_ERROR)
    expect((await error).data).toEqual({ event: 'news' })
    expect(received).toEqual([1])
  })

  it('reports a lifecycle listener that throws, and connects all the same', async () => {
    const server = await startServer()
    const client = createClient(server)
    client.on('connect', () => {
      throw new Error('listener bug')
    })
    const error = nextEvent<MeshError>(client, 'error')
    await client.connect()
    expect(client.state).toBe('open')
    expect((await error).data).toEqual({ event: 'connect' })
  })

  it('drops what an error listener throws: no loop, nothing uncaught', async () => {
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    onTestFinished(() => void process.off('uncaughtException', onUncaught))
    const server = await startServer({}, (s) => s.registerCommand('notify', (ctx) => ctx.connection.send('news', ctx.payload)))
    const client = await connectClient(server)
    let errorCalls = 0
    client.on('error', () => {
      errorCalls++
      throw new Error('error listener bug')
    })
    client.on('news', () => {
      throw new Error('listener bug')
    })
    await client.command('notify', 1)
    // One more round trip: a rethrow queued by the first event would have surfaced by now.
    await client.command('notify', 2)
    expect(errorCalls).toBe(2)
    expect(uncaught).toEqual([])
  })
})
