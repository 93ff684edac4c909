import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { ErrorCode, MeshError } from 'meshkit'
import { describe, expect, inject, it, onTestFinished, vi } from 'vitest'
import { codecByName } from '../src/shared/codec.js'
import { BuiltinCommand, CloseCode, FrameType, Subprotocol, SyncSubprotocol } from '../src/shared/protocol.js'
import { childInstance } from './support/child-instance.js'
import { connectClient, nextEvent, startServer, urlOf, waitFor } from './support/harness.js'

// The calling thread blocks while it waits, so every server these clients call runs
// in a process of its own (a server on this thread could never answer).
const FIXTURE = 'test/fixtures/sync-server.ts'
const root = fileURLToPath(new URL('..', import.meta.url))
const msgpack = codecByName('msgpack')

async function syncServer(env: Record<string, string> = {}): Promise<{ url: string; kill(): Promise<void> }> {
  const child = await childInstance(env, FIXTURE)
  return { url: `ws://127.0.0.1:${child.port}`, kill: () => child.kill() }
}

/** The error a synchronous call throws; fails the test if it returns or throws anything else. */
function thrownBy(call: () => unknown): MeshError {
  let thrown: unknown
  try {
    call()
  } catch (error) {
    thrown = error
  }
  expect(thrown).toBeInstanceOf(MeshError)
  return thrown as MeshError
}

interface Echo {
  payload: unknown
  connectionId: string
  userId: string | null
}

describe('client.commandSync', () => {
  it('returns the handler\'s result, run as the client\'s own connection, which stays the only one the server knows', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url)
    const first = client.commandSync<Echo>('echo', { n: 1 })
    const second = client.commandSync<Echo>('echo', [2, 'two'])
    expect(first).toEqual({ payload: { n: 1 }, connectionId: client.id, userId: null })
    expect(second.payload).toEqual([2, 'two'])
    expect(second.connectionId).toBe(client.id)
    // The side channel is neither a connection nor announced to onConnection listeners.
    expect(await client.command('connections')).toEqual({ count: 1 })
    expect(await client.command('announced')).toBe(1)
  })

  it('throws the MeshError of the handler, of middleware, and NOT_FOUND', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url, { codec: 'json' })
    const failed = thrownBy(() => client.commandSync('fail'))
    expect(failed.code).toBe('TEAPOT')
    expect(failed.data).toEqual({ short: true })
    expect(thrownBy(() => client.commandSync('blocked')).code).toBe('BLOCKED_BY_MIDDLEWARE')
    expect(thrownBy(() => client.commandSync('no-such-command')).code).toBe(ErrorCode.NOT_FOUND)
    // The side channel survives errors: the next call is answered on it.
    expect(client.commandSync<Echo>('echo', 'json').payload).toBe('json')
  })

  it('applies authentication and metadata: UNAUTHORIZED before authenticate(), the user after; metadata set by command() is seen', async () => {
    const { url } = await syncServer({ REDIS_URL: inject('redisUrl'), NAMESPACE: 'command-sync-auth', AUTH_REQUIRED: '1' })
    const client = await connectClient(url)
    expect(thrownBy(() => client.commandSync('echo')).code).toBe(ErrorCode.UNAUTHORIZED)
    await client.authenticate({ token: 'good' })
    expect(client.commandSync<Echo>('echo').userId).toBe('alice')
    await client.command('set-meta', { role: 'editor' })
    expect(client.commandSync('get-meta')).toEqual({ role: 'editor' })
  })

  it('throws TIMEOUT within its timeout, and a late reply is never taken for the next call\'s', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url)
    client.commandSync('echo') // the side channel is open: the timing below is the call's alone
    const started = performance.now()
    expect(thrownBy(() => client.commandSync('slow', 300, 100)).code).toBe(ErrorCode.TIMEOUT)
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(99)
    expect(elapsed).toBeLessThan(280)
    // The first call's reply comes (at about 300 ms) while this one waits: it is dropped.
    expect(client.commandSync('slow', 500)).toEqual({ after: 500 })
  })

  it('throws CONNECTION_CLOSED when the server dies during the call, without waiting for the timeout', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url, { shouldReconnect: false })
    client.commandSync('echo')
    const started = performance.now()
    expect(thrownBy(() => client.commandSync('die', null, 10_000)).code).toBe(ErrorCode.CONNECTION_CLOSED)
    expect(performance.now() - started).toBeLessThan(5_000)
    await nextEvent(client, 'close')
    expect(thrownBy(() => client.commandSync('echo')).code).toBe(ErrorCode.CONNECTION_CLOSED)
  })

  it('delivers events that arrived during the call afterwards, in order', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url)
    const ticks: number[] = []
    client.on<number>('tick', (n) => ticks.push(n))
    const fifth = nextEvent(client, 'tick', 5_000, (n) => n === 5)
    expect(client.commandSync('events', 5)).toBe('sent')
    // Nothing could run while the thread was blocked.
    expect(ticks).toEqual([])
    await fifth
    expect(ticks).toEqual([1, 2, 3, 4, 5])
  })

  it('binds a new side channel to the new connection after a reconnect', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url, { reconnectInterval: 10 })
    const before = client.commandSync<Echo>('echo').connectionId
    const reconnected = nextEvent(client, 'reconnect')
    client.commandSync('kick')
    await reconnected
    expect(client.id).not.toBe(before)
    expect(client.commandSync<Echo>('echo').connectionId).toBe(client.id)
  })

  it('throws CONNECTION_FAILED when the side channel reaches another instance than the connection\'s', async () => {
    const [a, b] = await Promise.all([childInstance({}, FIXTURE), childInstance({}, FIXTURE)])
    // Round robin without sticky sessions: the connection lands on one instance, its side channel on the other.
    const balancer = await childInstance({ TARGETS: `${a.port},${b.port}` }, 'test/fixtures/sync-balancer.ts')
    const client = await connectClient(`ws://127.0.0.1:${balancer.port}`)
    const error = thrownBy(() => client.commandSync('echo'))
    expect(error.code).toBe(ErrorCode.CONNECTION_FAILED)
    expect(error.data).toMatchObject({ closeCode: CloseCode.SIDE_CHANNEL_REFUSED })
    // The connection itself is unharmed.
    expect(await client.command<Echo>('echo', 'still')).toMatchObject({ payload: 'still', connectionId: client.id })
  })

  it('throws CONNECTION_CLOSED before connect() and NOT_SUPPORTED where there is no Node', async () => {
    const { url } = await syncServer()
    const client = await connectClient(url)
    await client.close()
    expect(thrownBy(() => client.commandSync('echo')).code).toBe(ErrorCode.CONNECTION_CLOSED)
    const browserLike = await connectClient(url)
    vi.stubGlobal('process', undefined)
    let error: MeshError
    try {
      error = thrownBy(() => browserLike.commandSync('echo'))
    } finally {
      vi.unstubAllGlobals()
    }
    expect(error.code).toBe(ErrorCode.NOT_SUPPORTED)
  })

  it('a process whose client used commandSync and closed exits by itself', async () => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ({ payload: ctx.payload }))
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/sync-client-exits.ts'], {
      cwd: root,
      env: { ...process.env, URL: urlOf(server) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    onTestFinished(() => void child.kill('SIGKILL'))
    // Well within the test's timeout; the side channel and the worker were still open at close().
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(output).toContain('ANSWERED sync')
    expect(code).toBe(0)
  })
})

describe('the side channel on the wire', () => {
  /** A bare socket; resolves once open. */
  async function socket(url: string, protocol: string): Promise<{ ws: WebSocket; frames: unknown[][]; closed: Promise<number> }> {
    const ws = new WebSocket(url, [protocol])
    onTestFinished(() => ws.terminate())
    const frames: unknown[][] = []
    ws.on('message', (data: Buffer) => frames.push(msgpack.decode(new Uint8Array(data)) as unknown[]))
    ws.on('error', () => {})
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    await once(ws, 'open')
    return { ws, frames, closed }
  }

  const send = (ws: WebSocket, frame: unknown[]): void => ws.send(msgpack.encode(frame))
  const SECRET = 'A'.repeat(43)

  it('attaches only with the secret the connection handed over, once; runs requests as that connection; closes with it', async () => {
    // A side channel that cannot attach yet waits this long for its connection's secret.
    const server = await startServer({ authentication: { timeout: 300 } })
    server.registerCommand('whoami', (ctx) => ctx.connection.id)
    const url = urlOf(server)
    const main = await socket(url, Subprotocol.msgpack)
    await waitFor(() => main.frames.length > 0)
    const connectionId = main.frames[0]![2] as string

    // No secret offered yet, a malformed attach, a request before attaching: all refused.
    const early = await socket(url, SyncSubprotocol.msgpack)
    send(early.ws, [FrameType.REQUEST, 1, 'whoami', null])
    expect(await early.closed).toBe(CloseCode.SIDE_CHANNEL_REFUSED)
    const stranger = await socket(url, SyncSubprotocol.msgpack)
    send(stranger.ws, [FrameType.REQUEST, 1, BuiltinCommand.SYNC_ATTACH, { connectionId: 'nobody', secret: SECRET }])
    expect(await stranger.closed).toBe(CloseCode.SIDE_CHANNEL_REFUSED)

    send(main.ws, [FrameType.REQUEST, 1, BuiltinCommand.SYNC_SECRET, { secret: SECRET }])
    await waitFor(() => main.frames.some((frame) => frame[0] === FrameType.RESPONSE && frame[1] === 1))

    const guesser = await socket(url, SyncSubprotocol.msgpack)
    send(guesser.ws, [FrameType.REQUEST, 1, BuiltinCommand.SYNC_ATTACH, { connectionId, secret: 'B'.repeat(43) }])
    expect(await guesser.closed).toBe(CloseCode.SIDE_CHANNEL_REFUSED)

    const side = await socket(url, SyncSubprotocol.msgpack)
    send(side.ws, [FrameType.REQUEST, 7, BuiltinCommand.SYNC_ATTACH, { connectionId, secret: SECRET }])
    send(side.ws, [FrameType.REQUEST, 8, 'whoami', null])
    await waitFor(() => side.frames.length === 2)
    expect(side.frames).toEqual([
      [FrameType.RESPONSE, 7, true],
      [FrameType.RESPONSE, 8, connectionId],
    ])

    // One use: the same secret does not attach a second channel.
    const replay = await socket(url, SyncSubprotocol.msgpack)
    send(replay.ws, [FrameType.REQUEST, 1, BuiltinCommand.SYNC_ATTACH, { connectionId, secret: SECRET }])
    expect(await replay.closed).toBe(CloseCode.SIDE_CHANNEL_REFUSED)
    expect(replay.frames).toEqual([])

    expect(server.connections.size).toBe(1)
    main.ws.close()
    expect(await side.closed).toBe(CloseCode.NORMAL)
  })

  it('a side channel that never attached closes when the server closes', async () => {
    const server = await startServer()
    const idle = await socket(urlOf(server), SyncSubprotocol.msgpack)
    await server.close()
    expect(await idle.closed).toBe(CloseCode.GOING_AWAY)
  })
})
