import { describe, expect, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import { MemoryStore, type Connection } from 'meshkit/server'
import { codecByName } from '../src/shared/codec.js'
import { FrameType } from '../src/shared/protocol.js'
import { fakeServer } from './support/fake-server.js'
import { RawClient, connectClient, deferred, nextEvent, rejectionOf, startServer } from './support/harness.js'

/** A memory store whose registrations, after the first, wait until the test lets them through. */
class GatedStore extends MemoryStore {
  readonly gate = deferred()
  private registrations = 0
  override async addConnection(connectionId: string, instanceId: string): Promise<void> {
    if (this.registrations++ > 0) await this.gate.promise
    await super.addConnection(connectionId, instanceId)
  }
}

describe('handshake and session end', () => {
  it('sends nothing before the hello, and answers requests sent early only after it', async () => {
    const store = new GatedStore()
    const server = await startServer({ store, pingInterval: 5, latencyInterval: 5 })
    server.registerCommand('echo', (ctx) => ctx.payload)
    const witness = await connectClient(server)
    const raw = await RawClient.open(server)
    raw.send([FrameType.REQUEST, 1, 'echo', 'early'])
    // While the raw connection is still registering, a broadcast and several ping
    // sweeps happen: the greeted witness sees them, the raw connection must not.
    const news = nextEvent(witness, 'news')
    await server.broadcast('news', 'too soon')
    await news
    for (let sweep = 0; sweep < 3; sweep++) await nextEvent(witness, 'ping')
    store.gate.resolve()
    const first = (await raw.next()) as unknown[]
    expect(first[0]).toBe(FrameType.HELLO)
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, 'early'])
  })

  it('answers a malformed request on its own id when the id is readable', async () => {
    const server = await startServer()
    const raw = await RawClient.open(server)
    await raw.hello()
    raw.send([FrameType.REQUEST, 5, 42])
    const error = await raw.nextOfType(FrameType.ERROR)
    expect(error.slice(0, 3)).toEqual([FrameType.ERROR, 5, ErrorCode.BAD_REQUEST])
  })

  it('accepts 64-bit MessagePack integers as ids, as encoders in other languages write them', async () => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ctx.payload)
    const raw = await RawClient.open(server)
    await raw.hello()
    const command = new TextEncoder().encode('echo')
    // [1, uint64 9, "echo", 1] with the id as a fixed 8-byte integer.
    raw.sendRaw(Buffer.from([0x94, 0x01, 0xcf, 0, 0, 0, 0, 0, 0, 0, 9, 0xa4, ...command, 0x01]))
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 9, 1])
  })

  it('ends the session without a reconnect when the server closes the connection normally', async () => {
    const server = await startServer()
    const kicked = deferred<Connection>()
    server.onConnection((connection) => kicked.resolve(connection))
    const client = await connectClient(server, { reconnectInterval: 1 })
    const closed = nextEvent(client, 'close')
    ;(await kicked.promise).close()
    expect((await nextEvent<{ code: number }>(client, 'disconnect')).code).toBe(1000)
    await closed
    expect(client.state).toBe('closed')
  })

  it('stops reconnecting when the server it reaches speaks another protocol version', async () => {
    let connections = 0
    const url = await fakeServer((socket) => {
      connections++
      const version = connections === 1 ? 1 : 99
      socket.send(codecByName('msgpack').encode([FrameType.HELLO, version, `c${connections}`, { maxPayload: 1 << 20, pingInterval: 30_000 }]))
      if (connections === 1) socket.close(1001)
    })
    const client = await connectClient(url, { reconnectInterval: 1 })
    const failed = await nextEvent<{ attempts: number }>(client, 'reconnectfailed')
    expect(failed.attempts).toBe(1)
    expect(connections).toBe(2)
    expect(client.state).toBe('closed')
  })

  it('refuses to send events whose names are the client lifecycle names', async () => {
    const server = await startServer()
    const seen = deferred<Connection>()
    server.onConnection((connection) => seen.resolve(connection))
    await connectClient(server)
    const connection = await seen.promise
    expect(() => connection.send('connect', {})).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }))
    expect((await rejectionOf(server.broadcast('error', {}))).code).toBe(ErrorCode.BAD_REQUEST)
    expect(connection.send('connected-users', 3)).toBe(true)
  })

  it('waits at least the ping gap the server announced before declaring it dead', async () => {
    let pings = 0
    const url = await fakeServer((socket) => {
      const codec = codecByName('msgpack')
      // Announces a 200 ms gap and pings more often than that, as a real server may.
      socket.send(codec.encode([FrameType.HELLO, 1, 'slow-pinger', { maxPayload: 1 << 20, pingInterval: 200 }]))
      const timer = setInterval(() => {
        pings++
        socket.send(codec.encode([FrameType.PING, pings]))
      }, 100)
      socket.on('close', () => clearInterval(timer))
    })
    // pingTimeout alone (10 ms, no misses allowed) would call this server dead before its first ping.
    const client = await connectClient(url, { pingTimeout: 10, maxMissedPings: 0 })
    let disconnected = false
    client.on('disconnect', () => (disconnected = true))
    for (let i = 0; i < 3; i++) await nextEvent(client, 'ping')
    expect(disconnected).toBe(false)
    expect(client.state).toBe('open')
  })
})
