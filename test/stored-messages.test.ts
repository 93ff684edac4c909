import { describe, expect, it } from 'vitest'
import { MeshClient } from 'meshkit/client'
import { MeshServer, type Connection } from 'meshkit/server'
import { codecByName } from '../src/shared/codec.js'
import { FrameType, PROTOCOL_VERSION } from '../src/shared/protocol.js'
import { fakeServer } from './support/fake-server.js'
import { connectClient, createClient, nextEvent, startServer, waitFor } from './support/harness.js'

/** The server side of the only connection. */
function onlyConnection(server: MeshServer): Connection {
  const [connection] = server.connections.values()
  if (!connection) throw new Error('no connection')
  return connection
}

describe('stored messages (storeMessages)', () => {
  for (const codec of ['msgpack', 'json'] as const) {
    it(`keeps events and client messages, not commands, pings or latency, on both sides (${codec})`, async () => {
      const server = await startServer({ storeMessages: true, pingInterval: 20, latencyInterval: 20 })
      server.registerCommand('echo', (ctx) => ctx.payload)
      const received: string[] = []
      server.onMessage('*', (ctx) => void received.push(ctx.type))
      const client = await connectClient(server, { codec, storeMessages: true })
      await server.addToRoom('lobby', client.id!)
      await nextEvent(client, 'latency')
      expect(await client.command('echo', 'not a message')).toBe('not a message')
      client.send('hello', { n: 1 })
      client.send('bare')
      await waitFor(() => received.length === 2)
      const last = nextEvent(client, 'room')
      onlyConnection(server).send('direct', [1, 2])
      await server.broadcast('everyone', 'all')
      await server.broadcastRoom('lobby', 'room', null)
      await last
      const expectedSent = [{ type: 'hello', data: { n: 1 } }, { type: 'bare', data: undefined }]
      const expectedEvents = [{ type: 'direct', data: [1, 2] }, { type: 'everyone', data: 'all' }, { type: 'room', data: null }]
      expect(onlyConnection(server).messages).toEqual({ sent: expectedEvents, received: expectedSent })
      expect(client.messages).toEqual({ sent: expectedSent, received: expectedEvents })
    })
  }

  it('keeps the newest maxStoredMessages per direction, oldest first', async () => {
    const server = await startServer({ storeMessages: true, maxStoredMessages: 3 })
    const received: unknown[] = []
    server.onMessage('m', (ctx) => void received.push(ctx.data))
    const client = await connectClient(server, { storeMessages: true, maxStoredMessages: 2 })
    for (let n = 1; n <= 5; n++) client.send('m', n)
    await waitFor(() => received.length === 5)
    const fifth = nextEvent(client, 'e', 5_000, (n) => n === 5)
    for (let n = 1; n <= 5; n++) onlyConnection(server).send('e', n)
    await fifth
    const values = (list: Array<{ data: unknown }> | undefined) => list?.map(({ data }) => data)
    expect(values(onlyConnection(server).messages?.received)).toEqual([3, 4, 5])
    expect(values(onlyConnection(server).messages?.sent)).toEqual([3, 4, 5])
    expect(values(client.messages?.sent)).toEqual([4, 5])
    expect(values(client.messages?.received)).toEqual([4, 5])
  })

  it('keeps a message sent while connecting once, though it is written only after the hello', async () => {
    const server = await startServer({ storeMessages: true })
    const received: unknown[] = []
    server.onMessage('early', (ctx) => void received.push(ctx.data))
    const client = createClient(server, { storeMessages: true })
    const connected = client.connect()
    expect(client.send('early', 1)).toBe(true)
    await connected
    await waitFor(() => received.length === 1)
    expect(client.messages?.sent).toEqual([{ type: 'early', data: 1 }])
    expect(onlyConnection(server).messages?.received).toEqual([{ type: 'early', data: 1 }])
  })

  it('keeps a redelivered event the client receives twice once, as its listeners see it once', async () => {
    const codec = codecByName('msgpack')
    const url = await fakeServer((socket) => {
      socket.send(codec.encode([FrameType.HELLO, PROTOCOL_VERSION, 'fake', { maxPayload: 1 << 20, pingInterval: 30_000 }]))
      socket.send(codec.encode([FrameType.EVENT, 'kept', 'once', 'id-1']))
      socket.send(codec.encode([FrameType.EVENT, 'kept', 'once', 'id-1']))
      socket.send(codec.encode([FrameType.EVENT, 'after', null]))
    })
    const client = createClient(url, { storeMessages: true })
    const seen: unknown[] = []
    client.on('kept', (data) => seen.push(data))
    const after = nextEvent(client, 'after')
    await client.connect()
    await after
    expect(seen).toEqual(['once'])
    expect(client.messages?.received).toEqual([{ type: 'kept', data: 'once' }, { type: 'after', data: null }])
  })

  it('returns a copy: changing what was read changes nothing stored', async () => {
    const server = await startServer({ storeMessages: true })
    const client = await connectClient(server)
    const event = nextEvent(client, 'e')
    onlyConnection(server).send('e', { n: 1 })
    await event
    const read = onlyConnection(server).messages!
    ;(read.sent[0]!.data as { n: number }).n = 2
    read.sent.length = 0
    expect(onlyConnection(server).messages?.sent).toEqual([{ type: 'e', data: { n: 1 } }])
  })

  it('keeps nothing by default', async () => {
    const server = await startServer()
    const client = await connectClient(server)
    const event = nextEvent(client, 'e')
    onlyConnection(server).send('e', 1)
    await event
    expect(onlyConnection(server).messages).toBeUndefined()
    expect(client.messages).toBeUndefined()
  })

  it('throws at construction for a bad cap', () => {
    expect(() => new MeshServer({ maxStoredMessages: 0 })).toThrow(RangeError)
    expect(() => new MeshClient('ws://127.0.0.1:1', { maxStoredMessages: 1.5 })).toThrow(RangeError)
    expect(() => new MeshClient('ws://127.0.0.1:1', { storeMessages: 'yes' as unknown as boolean })).toThrow(TypeError)
  })
})
