import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshServer, type Connection, type MeshServerOptions } from 'meshkit/server'
import { msgpackCodec } from '../src/shared/msgpack-codec.js'
import { FrameType } from '../src/shared/protocol.js'
import { RawClient, connectClient, deferred, startServer } from './support/harness.js'
import { openNonReadingWebSocket, pseudoRandomBytes, within } from './support/wire.js'

/** A server with an `echo` command, which replies with its payload. */
async function echoServer(options: MeshServerOptions = {}): Promise<MeshServer> {
  const server = await startServer(options)
  server.registerCommand('echo', (ctx) => ctx.payload)
  return server
}

/** The socket answers a valid request after whatever came before. */
async function expectStillAnswers(raw: RawClient): Promise<void> {
  raw.send([FrameType.REQUEST, 7, 'echo', 'ok'])
  expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 7, 'ok'])
}

describe('frames at the WebSocket layer: size and UTF-8', () => {
  it('closes a socket that sends a frame above maxPayload with 1009 and keeps serving the others', async () => {
    const server = await echoServer({ maxPayload: 1024 })
    const bystander = await connectClient(server)
    const raw = await RawClient.open(server)
    await raw.hello()

    raw.sendRaw(Buffer.alloc(2048, 0x61))

    expect((await within(raw.closed, 5_000, 'close of the oversized sender')).code).toBe(1009)
    expect(await bystander.command('echo', 'still here')).toBe('still here')
    const newcomer = await connectClient(server)
    expect(await newcomer.command('echo', 42)).toBe(42)
    expect(server.connections.size).toBe(2)
  })

  it('closes a socket that sends invalid UTF-8 in a text frame with 1007 and keeps serving the others', async () => {
    const server = await echoServer()
    const bystander = await connectClient(server, { codec: 'json' })
    const raw = await RawClient.open(server, 'json')
    await raw.hello()

    raw.sendRaw(Buffer.from([0x5b, 0x31, 0xff, 0xfe, 0x5d]), false)

    expect((await within(raw.closed, 5_000, 'close of the invalid UTF-8 sender')).code).toBe(1007)
    expect(await bystander.command('echo', 'unaffected')).toBe('unaffected')
  })

  it('accepts a frame of exactly maxPayload bytes', async () => {
    const server = await echoServer({ maxPayload: 1024 })
    const raw = await RawClient.open(server)
    await raw.hello()
    const header = msgpackCodec.encode([FrameType.REQUEST, 3, 'echo', '']) as Uint8Array
    // A str16 header (3 bytes) replaces the empty fixstr (1 byte); the string gets the rest.
    const text = 'x'.repeat(1024 - (header.byteLength - 1) - 3)
    const frame = msgpackCodec.encode([FrameType.REQUEST, 3, 'echo', text]) as Uint8Array
    expect(frame.byteLength).toBe(1024)
    raw.sendRaw(Buffer.from(frame))
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 3, text])
  })
})

describe('malformed frames', () => {
  const pack = (value: unknown): Buffer => Buffer.from(msgpackCodec.encode(value))
  // [what is sent, the bytes, the id of the error: the request's own when it is readable, else 0]
  const msgpackGarbage: Array<[string, () => Buffer | string, number]> = [
    ['random bytes (seed 1)', () => pseudoRandomBytes(1, 64), 0],
    ['random bytes (seed 2)', () => pseudoRandomBytes(2, 300), 0],
    ['random bytes (seed 3)', () => pseudoRandomBytes(3, 7), 0],
    ['a text frame on a msgpack connection', () => JSON.stringify([1, 5, 'echo', 'x']), 0],
    ['msgpack of a non-array', () => pack({ type: 1, id: 5, command: 'echo' }), 0],
    ['a valid request followed by a trailing byte', () => Buffer.concat([pack([1, 5, 'echo', 'x']), Buffer.from([1])]), 0],
    ['[1]', () => pack([1]), 0],
    ['[1, -1, "echo"]', () => pack([1, -1, 'echo']), 0],
    ['[1, 1.5, "echo"]', () => pack([1, 1.5, 'echo']), 0],
    ['[1, 2**40, "echo"]', () => pack([1, 2 ** 40, 'echo']), 0],
    ['[1, 0, "echo"]', () => pack([1, 0, 'echo']), 0],
    ['[1, 1, 42]', () => pack([1, 1, 42]), 1],
    ['[1, 5, "echo", "x", "extra"]', () => pack([1, 5, 'echo', 'x', 'extra']), 5],
    ['[99, 1]', () => pack([99, 1]), 0],
    ['[6]', () => pack([6]), 0],
    ['an empty binary frame', () => Buffer.alloc(0), 0],
    // An unknown extension type in the payload refuses the whole frame (never a silent nil).
    ['a payload holding extension type 5 (fixext 1)', () => Buffer.from([0x94, 0x01, 0x05, 0xa4, 0x65, 0x63, 0x68, 0x6f, 0xd4, 0x05, 0x01]), 0],
    ['a payload map holding extension type 0x10 (ext 8)', () => Buffer.from([0x94, 0x01, 0x05, 0xa4, 0x65, 0x63, 0x68, 0x6f, 0x81, 0xa1, 0x61, 0xc7, 0x03, 0x10, 1, 2, 3]), 0],
  ]
  const jsonGarbage: Array<[string, string, number]> = [
    ['invalid JSON text', '{"not json', 0],
    ['{"__proto__": {"polluted": 1}}', '{"__proto__": {"polluted": 1}}', 0],
    ['a JSON string', '"echo"', 0],
    ['[1, 1, 42] as JSON', '[1, 1, 42]', 1],
  ]

  async function expectRejectedAndSurvives(server: MeshServer, raw: RawClient, send: () => void, id: number): Promise<void> {
    const bystander = await connectClient(server)
    await raw.hello()
    send()
    const error = await raw.nextOfType(FrameType.ERROR)
    expect(error).toHaveLength(4)
    expect(error.slice(0, 3)).toEqual([FrameType.ERROR, id, ErrorCode.BAD_REQUEST])
    expect(typeof error[3]).toBe('string')
    await expectStillAnswers(raw)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(await bystander.command('echo', 'fine')).toBe('fine')
  }

  it.each(msgpackGarbage)('msgpack connection: %s gets BAD_REQUEST and the socket keeps working', async (_, make, id) => {
    const server = await echoServer()
    const raw = await RawClient.open(server, 'msgpack')
    await expectRejectedAndSurvives(server, raw, () => raw.sendRaw(make()), id)
  })

  it.each(jsonGarbage)('json connection: %s gets BAD_REQUEST and the socket keeps working', async (_, text, id) => {
    const server = await echoServer()
    const raw = await RawClient.open(server, 'json')
    await expectRejectedAndSurvives(server, raw, () => raw.sendRaw(text, false), id)
  })

  it('a request whose payload has a __proto__ key pollutes nothing, on either codec', async () => {
    const server = await echoServer()
    const payload = JSON.parse('{"__proto__": {"polluted": 1}, "plain": 2}') as Record<string, unknown>
    for (const codec of ['msgpack', 'json'] as const) {
      const raw = await RawClient.open(server, codec)
      await raw.hello()
      raw.send([FrameType.REQUEST, 8, 'echo', payload])
      const reply = await raw.nextOfType(FrameType.RESPONSE)
      expect(reply.slice(0, 2)).toEqual([FrameType.RESPONSE, 8])
      expect((reply[2] as Record<string, unknown>).plain).toBe(2)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      await expectStillAnswers(raw)
    }
  })
})

describe('command names from the prototype', () => {
  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'])('"%s" is NOT_FOUND', async (name) => {
    const server = await echoServer()
    const client = await connectClient(server)
    await expect(client.command(name, {})).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND })
    expect(await client.command('echo', 'up')).toBe('up')
  })
})

describe('slow reader', () => {
  it('closes a connection whose reader does not read, with bounded buffering, and serves the others', async () => {
    const maxBufferedBytes = 256 * 1024
    const warnings: Array<Record<string, unknown> | undefined> = []
    const server = await echoServer({ maxBufferedBytes, logger: { warn: (_message, fields) => warnings.push(fields) } })
    const bystander = await connectClient(server)

    const captured = deferred<Connection>()
    server.onConnection((connection) => {
      if (connection.id !== bystander.id) captured.resolve(connection)
    })
    const gone = deferred<Connection>()
    server.onDisconnection((connection) => gone.resolve(connection))

    const { statusLine } = await openNonReadingWebSocket(server.port)
    expect(statusLine).toMatch(/^HTTP\/1\.1 101 /)
    const slow = await within(captured.promise, 5_000, 'onConnection for the non-reading peer')

    const payload = Buffer.alloc(64 * 1024, 0x2a)
    const messageBytes = (msgpackCodec.encode([FrameType.EVENT, 'big', payload]) as Uint8Array).byteLength + 14
    const limit = 2_000
    let sent = 0
    let maxSeen = 0
    let accepted = true
    while (sent < limit && accepted) {
      accepted = slow.send('big', payload)
      sent++
      maxSeen = Math.max(maxSeen, slow.bufferedAmount)
    }

    expect(accepted).toBe(false)
    expect(sent).toBeLessThan(limit)
    // One message beyond the limit, plus the close frame queued behind it.
    expect(maxSeen).toBeLessThanOrEqual(maxBufferedBytes + messageBytes + 64)
    expect(slow.send('after', 1)).toBe(false)
    const disconnected = await within(gone.promise, 5_000, 'onDisconnection for the non-reading peer')
    expect(disconnected.id).toBe(slow.id)
    expect(server.connections.has(slow.id)).toBe(false)
    // The peer may only see 1006 (the close frame queued behind unread data): the server says why.
    expect(warnings).toContainEqual(expect.objectContaining({ connectionId: slow.id, maxBufferedBytes }))
    expect(await bystander.command('echo', 'served')).toBe('served')
  })
})

describe('maxPendingRequests', () => {
  it('refuses requests beyond the limit with TOO_MANY_REQUESTS, per connection, until some finish', async () => {
    const server = await echoServer({ maxPendingRequests: 3 })
    const gate = deferred()
    let started = 0
    server.registerCommand('wait', async (ctx) => {
      started++
      await gate.promise
      return ctx.payload
    })
    // A raw socket: the meshkit client would hold the fourth request back itself (HELLO announces the limit).
    const client = await RawClient.open(server)
    expect((await client.hello())[3]).toMatchObject({ maxPendingRequests: 3 })
    const other = await connectClient(server)

    for (const id of [1, 2, 3, 4]) client.send([FrameType.REQUEST, id, 'wait', id])
    expect(await within(client.nextOfType(FrameType.ERROR), 5_000, 'the fourth request')).toEqual([
      FrameType.ERROR,
      4,
      ErrorCode.TOO_MANY_REQUESTS,
      expect.any(String),
    ])
    expect(started).toBe(3)
    // The limit counts one connection's requests, not the server's.
    const otherInFlight = other.command('wait', 'other')

    gate.resolve()
    const replies = [await client.nextOfType(FrameType.RESPONSE), await client.nextOfType(FrameType.RESPONSE), await client.nextOfType(FrameType.RESPONSE)]
    expect(replies.map((frame) => frame[2]).sort()).toEqual([1, 2, 3])
    expect(await otherInFlight).toBe('other')
    client.send([FrameType.REQUEST, 5, 'wait', 5])
    expect(await client.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 5, 5])
    expect(started).toBe(5)
  })
})
