import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshServer, type MeshServerOptions } from 'meshkit/server'
import type { MeshClient } from 'meshkit/client'
import { connectClient, rejectionOf, startServer } from './support/harness.js'

/** A server whose clients may join and subscribe to anything. */
async function openServer(options: MeshServerOptions = {}): Promise<MeshServer> {
  return startServer(options, (server) => {
    server.exposeRoom(/.*/)
    server.exposeChannel(/.*/)
    server.registerCommand('echo', (ctx) => ctx.payload)
  })
}

async function expectLimit(promise: Promise<unknown>, limit: string, max: number): Promise<void> {
  const error = await rejectionOf(promise)
  expect(error.code).toBe(ErrorCode.LIMIT_EXCEEDED)
  expect(error.data).toEqual({ limit, max })
}

/** The connection still answers after a refusal. */
async function expectUsable(client: MeshClient): Promise<void> {
  expect(await client.command('echo', 'still here')).toBe('still here')
}

describe('maxRoomsPerConnection', () => {
  it('refuses the join after the limit with LIMIT_EXCEEDED; rejoining, leaving and other connections still work', async () => {
    const server = await openServer({ maxRoomsPerConnection: 3 })
    const client = await connectClient(server)
    for (const room of ['r1', 'r2', 'r3']) expect(await client.joinRoom(room)).toBe(true)
    await expectLimit(client.joinRoom('r4'), 'maxRoomsPerConnection', 3)
    expect(await server.isInRoom('r4', client.id!)).toBe(false)
    await expectUsable(client)
    expect(await client.joinRoom('r2')).toBe(true) // already in: no new room
    expect(await client.leaveRoom('r1')).toBe(true)
    expect(await client.joinRoom('r4')).toBe(true)
    const other = await connectClient(server)
    expect(await other.joinRoom('r5')).toBe(true) // the limit is per connection
  })

  it('counts joins in flight: of 10 pipelined joins with a limit of 3, exactly 3 succeed', async () => {
    const server = await openServer({ maxRoomsPerConnection: 3 })
    const client = await connectClient(server)
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => client.joinRoom(`room${i}`)))
    expect(results.filter((result) => result.status === 'fulfilled' && result.value === true)).toHaveLength(3)
    for (const result of results) {
      if (result.status === 'rejected') expect((result.reason as { code: string }).code).toBe(ErrorCode.LIMIT_EXCEEDED)
    }
    const rooms = await Promise.all(Array.from({ length: 10 }, (_, i) => server.isInRoom(`room${i}`, client.id!)))
    expect(rooms.filter(Boolean)).toHaveLength(3)
  })

  it('counts rooms the server added, but never refuses server.addToRoom', async () => {
    const server = await openServer({ maxRoomsPerConnection: 2 })
    const client = await connectClient(server)
    for (const room of ['s1', 's2', 's3']) await server.addToRoom(room, client.id!)
    expect(await server.isInRoom('s3', client.id!)).toBe(true)
    await expectLimit(client.joinRoom('mine'), 'maxRoomsPerConnection', 2)
  })
})

describe('maxChannelsPerConnection', () => {
  it('refuses the subscription after the limit; resubscribing and unsubscribing still work', async () => {
    const server = await openServer({ maxChannelsPerConnection: 2 })
    const client = await connectClient(server)
    const received: unknown[] = []
    for (const channel of ['c1', 'c2']) expect((await client.subscribe(channel, (message) => received.push(message))).success).toBe(true)
    await expectLimit(client.subscribe('c3', () => {}), 'maxChannelsPerConnection', 2)
    await expectUsable(client)
    expect((await rejectionOf(client.subscribe('c2', (message) => received.push(message)))).code).toBe(ErrorCode.ALREADY_SUBSCRIBED)
    expect(await client.unsubscribe('c1')).toBe(true)
    expect((await client.subscribe('c3', (message) => received.push(message))).success).toBe(true)
    await server.writeChannel('c3', 'on c3')
    await server.writeChannel('c2', 'on c2')
    await expect.poll(() => received).toEqual(['on c3', 'on c2'])
  })

  it('lets exactly the limit through when subscribes are pipelined', async () => {
    const server = await openServer({ maxChannelsPerConnection: 2 })
    const client = await connectClient(server)
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => client.subscribe(`p${i}`, () => {})))
    expect(results.filter((result) => result.status === 'fulfilled' && result.value.success)).toHaveLength(2)
    expect(results.filter((result) => result.status === 'rejected')).toHaveLength(4)
  })
})

describe('maxNameLength', () => {
  it('refuses room and channel names above 255 UTF-8 bytes by default, up to a 900 KB one', async () => {
    const server = await openServer()
    const client = await connectClient(server)
    expect(await client.joinRoom('r'.repeat(255))).toBe(true)
    expect((await client.subscribe('c'.repeat(255), () => {})).success).toBe(true)
    expect(await client.joinRoom('é'.repeat(127))).toBe(true) // 254 bytes
    for (const name of ['r'.repeat(256), 'é'.repeat(128), 'x'.repeat(900 * 1024)]) {
      await expectLimit(client.joinRoom(name), 'maxNameLength', 255)
      await expectLimit(client.subscribe(name, () => {}), 'maxNameLength', 255)
      // Nothing by such a name can be joined or subscribed: leaving or unsubscribing it is simply false.
      expect(await client.leaveRoom(name)).toBe(false)
      expect(await client.unsubscribe(name)).toBe(false)
    }
    expect(await server.getRoomMembers('x'.repeat(900 * 1024))).toEqual([])
    await expectUsable(client)
  })

  it('takes its limit from the option', async () => {
    const server = await openServer({ maxNameLength: 8 })
    const client = await connectClient(server)
    expect(await client.joinRoom('12345678')).toBe(true)
    await expectLimit(client.joinRoom('123456789'), 'maxNameLength', 8)
  })
})

describe('limit options', () => {
  it('are safe by default: the 1,001st channel of a connection is refused', { timeout: 20_000 }, async () => {
    const server = await openServer()
    const client = await connectClient(server)
    for (let start = 0; start < 1_000; start += 200) {
      // In batches that stay below maxPendingRequests.
      const subscribed = await Promise.all(Array.from({ length: 200 }, (_, i) => client.subscribe(`d${start + i}`, () => {})))
      expect(subscribed.every((result) => result.success)).toBe(true)
    }
    await expectLimit(client.subscribe('one-more', () => {}), 'maxChannelsPerConnection', 1_000)
  })

  it.each(['maxRoomsPerConnection', 'maxChannelsPerConnection', 'maxNameLength', 'maxHistoryLimit', 'maxHistoryBytes', 'maxConcurrentHistoryReads'])(
    '%s must be a positive integer',
    (option) => {
      for (const value of [0, -1, 1.5, Number.NaN, Infinity, '10']) {
        expect(() => new MeshServer({ port: 0, [option]: value } as MeshServerOptions)).toThrow(RangeError)
      }
    },
  )
})
