import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { describe, expect, it, onTestFinished } from 'vitest'
import { nanoid } from 'nanoid'
import { Counter, Registry } from 'prom-client'
import { WebSocket } from 'ws'
import { ErrorCode, MeshError, defineApi } from 'meshkit'
import { z } from 'zod'
import { MeshServer, type MeshServerOptions } from 'meshkit/server'
import { FrameType, Subprotocol } from '../src/shared/protocol.js'
import { codecByName, encodeFrame } from '../src/shared/codec.js'
import { RawClient, connectClient, deferred, nextEvent, rejectionOf, startServer, urlOf, waitFor } from './support/harness.js'
import { metric, parseSamples, scrape, valueOf } from './support/metrics.js'
import { openNonReadingWebSocket, within } from './support/wire.js'

async function metricsServer(options: MeshServerOptions = {}): Promise<MeshServer> {
  const server = await startServer({ metrics: true, ...options })
  server.registerCommand('echo', (ctx) => ctx.payload)
  return server
}

async function get(url: string, method = 'GET'): Promise<{ status: number; type: string | null; body: string }> {
  const response = await fetch(url, { method })
  return { status: response.status, type: response.headers.get('content-type'), body: await response.text() }
}

describe('GET /metrics', () => {
  it('answers Prometheus text on meshkit\'s own server; other paths still answer 426, other methods 405', async () => {
    const server = await metricsServer()
    const base = `http://127.0.0.1:${server.port}`
    const answer = await get(`${base}/metrics?x=1`)
    expect(answer.status).toBe(200)
    expect(answer.type).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(answer.body).toContain('# TYPE meshkit_connections gauge')
    expect(answer.body).toContain('# TYPE meshkit_command_duration_seconds histogram')
    expect(parseSamples(answer.body).length).toBeGreaterThan(10)
    expect((await get(`${base}/`)).status).toBe(426)
    expect((await get(`${base}/metricsx`)).status).toBe(426)
    expect((await get(`${base}/metrics`, 'POST')).status).toBe(405)
    expect(server.metricsRegistry).toBeDefined()
  })

  it('is not served with metrics off, and the server has no registry', async () => {
    const server = await startServer()
    expect((await get(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(426)
    expect(server.metricsRegistry).toBeUndefined()
  })

  it('is served by server.httpHandler() on the user\'s server, which passes other requests on (plain Node and next())', async () => {
    const http = createServer()
    const mesh = new MeshServer({ server: http, metrics: true })
    onTestFinished(() => mesh.close())
    const handle = mesh.httpHandler()
    let passedOn = 0
    http.on('request', (request: IncomingMessage, response: ServerResponse) => {
      // Connect-style: next() for what meshkit does not serve.
      handle(request, response, () => {
        passedOn++
        response.end('user handler')
      })
    })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => http.close(() => resolve())))
    await mesh.ready()
    const client = await connectClient(`ws://127.0.0.1:${mesh.port}`)
    expect(client.id).toBeDefined()
    const samples = parseSamples((await get(`http://127.0.0.1:${mesh.port}/metrics`)).body)
    expect(valueOf(samples, 'meshkit_connections')).toBe(1)
    expect(await get(`http://127.0.0.1:${mesh.port}/other`)).toMatchObject({ status: 200, body: 'user handler' })
    expect(passedOn).toBe(1)
    expect(handle({ url: '/nothing', method: 'GET' } as IncomingMessage, {} as ServerResponse)).toBe(false)
  })
})

describe('connections', () => {
  it('the gauge follows open connections; opens are counted, closes by code (other for codes nobody defines)', async () => {
    const server = await metricsServer()
    const first = await connectClient(server)
    const second = await connectClient(server)
    expect(await metric(server, 'meshkit_connections')).toBe(2)
    expect(await metric(server, 'meshkit_connections_opened_total')).toBe(2)

    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    await first.close()
    await gone.promise
    const cut = nextEvent<{ code: number }>(second, 'disconnect')
    server.connections.get(second.id!)!.close(4321, 'application code')
    expect((await cut).code).toBe(4321)
    await waitFor(() => server.connections.size === 0)

    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_connections')).toBe(0)
    expect(valueOf(samples, 'meshkit_connections_closed_total', { code: '1000' })).toBe(1)
    expect(valueOf(samples, 'meshkit_connections_closed_total', { code: 'other' })).toBe(1)
    expect(samples.some((sample) => sample.labels.code === '4321')).toBe(false)
  })

  it('counts upgrades refused before a connection existed, by status', async () => {
    const server = await metricsServer({ allowedOrigins: ['https://app.example'] })
    for (const [path, origin] of [['/elsewhere', 'https://app.example'], ['/', 'https://evil.example']] as const) {
      const socket = new WebSocket(urlOf(server, path), [Subprotocol.msgpack], { origin })
      socket.on('error', () => {})
      onTestFinished(() => socket.terminate())
      await once(socket, 'unexpected-response')
    }
    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_upgrades_refused_total', { status: '404' })).toBe(1)
    expect(valueOf(samples, 'meshkit_upgrades_refused_total', { status: '403' })).toBe(1)
    expect(valueOf(samples, 'meshkit_connections_opened_total')).toBe(0)
  })

  it('counts a slow consumer closed with 4008', async () => {
    const server = await metricsServer({ maxBufferedBytes: 256 * 1024 })
    const opened = deferred<string>()
    server.onConnection((connection) => opened.resolve(connection.id))
    await openNonReadingWebSocket(server.port)
    const connection = server.connections.get(await within(opened.promise, 5_000, 'the non-reading peer'))!
    const payload = Buffer.alloc(64 * 1024, 0x2a)
    while (connection.send('big', payload));
    await waitFor(() => server.connections.size === 0)
    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_slow_consumer_closes_total')).toBe(1)
    expect(valueOf(samples, 'meshkit_connections_closed_total', { code: '4008' }) + valueOf(samples, 'meshkit_connections_closed_total', { code: '1006' })).toBe(1)
  })
})

describe('commands', () => {
  it('are counted by command and outcome (ok or the error code), with a duration for each', async () => {
    const server = await metricsServer()
    server.registerCommand('deny', () => {
      throw new MeshError(ErrorCode.FORBIDDEN, 'no')
    })
    server.registerCommand('crash', async () => {
      throw new Error('bug')
    })
    const client = await connectClient(server)
    expect(await client.command('echo', 1)).toBe(1)
    expect(await client.command('echo', 2)).toBe(2)
    expect((await rejectionOf(client.command('deny'))).code).toBe(ErrorCode.FORBIDDEN)
    expect((await rejectionOf(client.command('crash'))).code).toBe(ErrorCode.INTERNAL_ERROR)
    expect((await rejectionOf(client.command('no-such-command'))).code).toBe(ErrorCode.NOT_FOUND)

    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_commands_total', { command: 'echo', outcome: 'ok' })).toBe(2)
    expect(valueOf(samples, 'meshkit_commands_total', { command: 'deny', outcome: 'FORBIDDEN' })).toBe(1)
    expect(valueOf(samples, 'meshkit_commands_total', { command: 'crash', outcome: 'INTERNAL_ERROR' })).toBe(1)
    expect(valueOf(samples, 'meshkit_commands_total', { command: 'unknown', outcome: 'NOT_FOUND' })).toBe(1)
    expect(valueOf(samples, 'meshkit_command_duration_seconds_count', { command: 'echo' })).toBe(2)
    expect(valueOf(samples, 'meshkit_command_duration_seconds_bucket', { command: 'echo', le: '+Inf' })).toBe(2)
    expect(valueOf(samples, 'meshkit_command_duration_seconds_sum', { command: 'echo' })).toBeGreaterThan(0)
    // Counters are totals: a second scrape shows the same, not what came since the first.
    expect(await metric(server, 'meshkit_commands_total', { command: 'echo', outcome: 'ok' })).toBe(2)
  })

  it('keep label cardinality bounded under 1,000 random command names', async () => {
    const server = await metricsServer()
    const raw = await RawClient.open(server)
    await raw.hello()
    for (let id = 1; id <= 1_000; id++) raw.send([FrameType.REQUEST, id, `random-${nanoid()}`, null])
    raw.send([FrameType.REQUEST, 1_001, 'echo', 'last'])
    for (let answered = 0; answered < 1_001; answered++) await raw.next()
    const samples = await scrape(server)
    const commands = new Set(samples.filter((sample) => sample.name.startsWith('meshkit_command')).map((sample) => sample.labels.command))
    expect(commands).toEqual(new Set(['unknown', 'echo']))
    expect(valueOf(samples, 'meshkit_commands_total', { command: 'unknown', outcome: 'NOT_FOUND' })).toBe(1_000)
    expect(samples.length).toBeLessThan(200)
  })
})

describe('client messages, rate limits, events and channels', () => {
  it('counts client messages by outcome, and rate-limited requests, messages and the disconnect', async () => {
    const server = await metricsServer({ rateLimit: { points: 3, duration: 60_000, closeAfter: 3 } })
    server.onMessage('chat', () => {})
    const raw = await RawClient.open(server)
    await raw.hello()
    raw.send([FrameType.MESSAGE, 'chat', 'hi'])
    raw.send([FrameType.MESSAGE, 'nobody-listens', 'hi'])
    raw.send([FrameType.REQUEST, 1, 'echo', 'fits'])
    // The bucket (3) is empty now: one refused request, one dropped message, then the close.
    raw.send([FrameType.REQUEST, 2, 'echo', 'over'])
    raw.send([FrameType.MESSAGE, 'chat', 'over'])
    raw.send([FrameType.MESSAGE, 'chat', 'over'])
    raw.send([FrameType.MESSAGE, 'chat', 'closes'])
    expect((await within(raw.closed, 5_000, 'the flooder\'s close')).code).toBe(4029)
    await waitFor(() => server.connections.size === 0)
    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'delivered' })).toBe(1)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'unhandled' })).toBe(1)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'rate_limited' })).toBe(2)
    expect(valueOf(samples, 'meshkit_rate_limited_total', { kind: 'request' })).toBe(1)
    expect(valueOf(samples, 'meshkit_rate_limited_total', { kind: 'message' })).toBe(2)
    expect(valueOf(samples, 'meshkit_rate_limited_total', { kind: 'disconnect' })).toBe(1)
    expect(valueOf(samples, 'meshkit_connections_closed_total', { code: '4029' })).toBe(1)
  })

  it('counts messages refused by their schema as invalid and a schema fault as dropped, as server.stats does', async () => {
    const faulty = { '~standard': { version: 1 as const, vendor: 'test', validate: (): never => { throw new Error('schema bug') } } }
    const server = await metricsServer({ api: defineApi({ messages: { typed: z.object({ n: z.number() }), faulty } }), logger: {} })
    const handled = deferred()
    server.onMessage('typed', () => handled.resolve())
    server.onMessage('faulty', () => {})
    const client = await connectClient(server)
    client.send('typed', { n: 'not a number' })
    expect((await nextEvent<MeshError>(client, 'error')).code).toBe(ErrorCode.BAD_REQUEST)
    client.send('faulty', {})
    expect((await nextEvent<MeshError>(client, 'error')).code).toBe(ErrorCode.INTERNAL_ERROR)
    client.send('typed', { n: 1 })
    await handled.promise
    expect(server.stats).toMatchObject({ invalidMessages: 1, droppedMessages: 1 })
    const samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'invalid' })).toBe(1)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'dropped' })).toBe(1)
    expect(valueOf(samples, 'meshkit_client_messages_total', { outcome: 'delivered' })).toBe(1)
  })

  it('counts event frames and their bytes per socket written, and channel writes', async () => {
    const server = await metricsServer()
    server.exposeChannel('news')
    const clients = [await connectClient(server), await connectClient(server, { codec: 'json' })]
    const arrived = clients.map((client) => nextEvent(client, 'hello'))
    await server.broadcast('hello', 'é')
    await Promise.all(arrived)
    const frame = [FrameType.EVENT, 'hello', 'é']
    const msgpackBytes = (encodeFrame(codecByName('msgpack'), frame) as Uint8Array).byteLength
    // A string frame counts its UTF-8 bytes ("é" is two), not its UTF-16 length.
    const jsonBytes = Buffer.byteLength(encodeFrame(codecByName('json'), frame) as string)
    expect(jsonBytes).toBe((encodeFrame(codecByName('json'), frame) as string).length + 1)
    let samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_events_written_total')).toBe(2)
    expect(valueOf(samples, 'meshkit_event_bytes_written_total')).toBe(msgpackBytes + jsonBytes)

    expect(await server.writeChannel('news', 'one')).toBeGreaterThan(0)
    await server.writeChannel('news', 'two')
    samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_channel_writes_total')).toBe(2)
  })

  it('shows events held for a connection whose kept messages are being redelivered', async () => {
    const server = await metricsServer({ sync: { enabled: true, keepUntilAcknowledged: false, redeliveryInterval: 2_000 } })
    server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
    for (const kept of ['k1', 'k2']) await server.send('msg', kept, ['u1'])
    const client = await connectClient(server)
    const first = nextEvent(client, 'msg')
    await client.authenticate({ user: 'u1' })
    expect(await first).toBe('k1')
    // k2 waits two seconds (redeliveryInterval): a live message waits behind it, held.
    const rest = [nextEvent(client, 'msg', 10_000, (payload) => payload === 'k2'), nextEvent(client, 'msg', 10_000, (payload) => payload === 'live')]
    await server.send('msg', 'live', ['u1'])
    expect(await metric(server, 'meshkit_redelivery_queue_length')).toBe(1)
    await Promise.all(rest)
    expect(await metric(server, 'meshkit_redelivery_queue_length')).toBe(0)
  })
})

describe('the registry', () => {
  it('takes the user\'s registry and prefix, keeps the user\'s own metrics in the scrape, refuses a second server with the same names, and frees them on close', async () => {
    const register = new Registry()
    const own = new Counter({ name: 'app_things_total', help: 'things', registers: [register] })
    own.inc(3)
    const server = await startServer({ metrics: { register, prefix: 'chat_' } })
    expect(server.metricsRegistry).toBe(register)
    const samples = await scrape(server)
    expect(valueOf(samples, 'app_things_total')).toBe(3)
    expect(valueOf(samples, 'chat_connections')).toBe(0)
    expect(samples.some((sample) => sample.name.startsWith('meshkit_'))).toBe(false)

    expect(() => new MeshServer({ port: 0, metrics: { register, prefix: 'chat_' } })).toThrow(RangeError)
    const other = await startServer({ metrics: { register, prefix: 'other_' } })
    expect(valueOf(await scrape(other), 'other_connections')).toBe(0)
    await server.close()
    const again = await startServer({ metrics: { register, prefix: 'chat_' } })
    expect(valueOf(await scrape(again), 'chat_connections_opened_total')).toBe(0)
  })

  it('refuses bad metrics options at construction', () => {
    expect(() => new MeshServer({ metrics: 'yes' as never })).toThrow(TypeError)
    expect(() => new MeshServer({ metrics: { registry: new Registry() } as never })).toThrow(TypeError)
    expect(() => new MeshServer({ metrics: { register: {} as never } })).toThrow(TypeError)
    expect(() => new MeshServer({ metrics: { prefix: 'has space' } })).toThrow(TypeError)
  })
})
