import { describe, expect, inject, it, onTestFinished } from 'vitest'
import type { MeshServerOptions } from '../src/server/index.js'
import { FuzzCommand, fuzzSession } from './support/fuzz-frames.js'
import { configureFuzzServer, playSession, WellBehavedClient, type SessionOutcome } from './support/fuzz-run.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, nextEvent, startServer, urlOf } from './support/harness.js'

/** Seeds of the bounded run; a failure names its seed, and `fuzzSession(seed)` replays it. */
const FIRST_SEED = 1
const SESSIONS = 120
const CONCURRENCY = 6

/** The names that break code keeping names as keys of plain objects. */
const prototypeNames = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']

/** Records what would crash a process: unhandled rejections and uncaught exceptions while the test runs. */
function watchProcessFaults(): unknown[] {
  const faults: unknown[] = []
  const onFault = (error: unknown): void => {
    faults.push(error)
  }
  process.on('unhandledRejection', onFault)
  process.on('uncaughtException', onFault)
  onTestFinished(() => {
    process.off('unhandledRejection', onFault)
    process.off('uncaughtException', onFault)
  })
  return faults
}

describe('hostile input', () => {
  it('the generator replays a seed exactly, and covers every kind of junk', () => {
    const kinds = new Set<string>()
    // The first 40 seeds already hold every kind; the run below plays them and more.
    for (let seed = FIRST_SEED; seed < FIRST_SEED + 40; seed++) {
      for (const message of fuzzSession(seed).messages) kinds.add(message.kind)
    }
    expect([...kinds].sort()).toEqual(['duplicate ids in flight', 'garbage text', 'invalid utf-8 text', 'lying header', 'message frame', 'oversized frame', 'random bytes', 'truncated frame', 'wrong-shaped frame'])
    expect(fuzzSession(42)).toEqual(fuzzSession(42))
    expect(fuzzSession(42)).not.toEqual(fuzzSession(43))
  })

  it('junk from many sockets crashes nothing, leaks no connection, pollutes no prototype, and a well-behaved client sees no failure', async () => {
    const faults = watchProcessFaults()
    let joins = 0
    const server = await startServer({}, (s) => {
      configureFuzzServer(s)
      s.addMiddleware((ctx) => {
        if (ctx.command === 'mesh/join-room') joins++
      })
    })
    const client = new WellBehavedClient(await connectClient(server))
    client.start()

    const outcomes: Record<SessionOutcome, number[]> = { answered: [], closed: [], hung: [] }
    const closeCodes = new Set<number | undefined>()
    let frames = 0
    let next = FIRST_SEED
    const worker = async (): Promise<void> => {
      while (next < FIRST_SEED + SESSIONS) {
        const seed = next++
        const result = await playSession(urlOf(server), seed)
        outcomes[result.outcome].push(seed)
        if (result.outcome === 'closed') closeCodes.add(result.closeCode)
        frames += result.frames
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    await client.stop()

    expect(frames).toBe(SESSIONS * 13)
    // Every hostile socket got its probe answered or was closed on purpose; none was left hanging.
    expect(outcomes.hung, 'seeds whose probe was neither answered nor closed').toEqual([])
    expect(outcomes.answered.length).toBeGreaterThan(SESSIONS / 4)
    // Only the two closes docs/protocol.md names for junk: 1009 (over maxPayload) and 1007 (text that is not UTF-8).
    expect(outcomes.closed.length).toBeGreaterThan(0)
    expect([...closeCodes].every((code) => code === 1007 || code === 1009), `close codes ${[...closeCodes].join(', ')}`).toBe(true)
    expect(faults).toEqual([])
    expect(client.failures).toEqual([])
    expect(client.commands).toBeGreaterThan(10)
    // Messages reached the handlers, the throwing and rejecting ones too, and were survived.
    expect(server.stats.failedMessages).toBeGreaterThan(0)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // Only the well-behaved client remains once the hostile sockets are gone.
    await eventually(async () => expect(server.connections.size).toBe(1))
    // Nor does any room they joined keep them (the names the generator's payloads use).
    expect(joins).toBeGreaterThan(0)
    for (const room of ['ok', '7', '[object Object]', ...prototypeNames]) {
      await eventually(async () => expect(await server.getRoomMembers(room), room).toEqual([]))
    }
  }, 60_000)
})


describe.each([
  ['memory', (): MeshServerOptions => ({})],
  ['Redis', (): MeshServerOptions => ({ redis: inject('redisUrl'), namespace: uniqueNamespace('fuzz-names') })],
])('prototype names on the %s store', (_, backend) => {
  it('are ordinary names for commands, rooms, channels, events and payload keys, on both codecs', async () => {
    const faults = watchProcessFaults()
    const server = await startServer(backend(), (s) => {
      configureFuzzServer(s)
      for (const name of prototypeNames) s.registerCommand(name, (ctx) => ({ name, payload: ctx.payload }))
    })
    for (const codec of ['msgpack', 'json'] as const) {
      const client = await connectClient(server, { codec })
      for (const name of prototypeNames) {
        expect(await client.command(name, 1)).toEqual({ name, payload: 1 })
        expect(await client.joinRoom(name)).toBe(true)
        expect(await server.getRoomMembers(name)).toContain(client.id)
        const message = deferred<unknown>()
        expect((await client.subscribe(name, (received) => message.resolve(received))).success).toBe(true)
        await server.writeChannel(name, { channel: name })
        expect(await message.promise).toEqual({ channel: name })
        const event = nextEvent(client, name)
        await server.broadcastRoom(name, name, { event: name })
        expect(await event).toEqual({ event: name })
        expect(await client.leaveRoom(name)).toBe(true)
        expect(await client.unsubscribe(name)).toBe(true)
      }
      // Own keys with these names travel as data both ways and never become a prototype.
      const payload = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, "toString": 1}') as Record<string, unknown>
      const echoed = (await client.command(FuzzCommand.ECHO, payload)) as Record<string, unknown>
      // JSON keeps the key; msgpackr renames it to `__proto_` while decoding (its guard against pollution), as docs/protocol.md says.
      expect(Object.keys(echoed).sort()).toEqual([codec === 'json' ? '__proto__' : '__proto_', 'constructor', 'toString'])
      expect(Object.getPrototypeOf(echoed)).toBe(Object.prototype)
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    }
    expect(faults).toEqual([])
  }, 30_000)
})
