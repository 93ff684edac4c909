import type { IncomingMessage } from 'node:http'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import { ErrorCode, MeshError } from 'meshkit'
import { Dispatcher, type MeshServer, type MeshServerOptions, type MeshStore } from 'meshkit/server'
import { CloseCode, FrameType } from '../src/shared/protocol.js'
import { collect, fence, startInstances, uniqueNamespace } from './support/cluster.js'
import { RawClient, connectClient, createClient, deferred, type Deferred, eventually, nextEvent, urlOf, waitFor } from './support/harness.js'
import { openNonReadingWebSocket } from './support/wire.js'
import { sharedRedis } from './support/shared-redis.js'

/** Two instances sharing Redis; `mesh/authenticate` accepts `{ user }`. */
async function twoInstances(options: MeshServerOptions = {}): Promise<{ a: MeshServer; b: MeshServer; namespace: string }> {
  const namespace = uniqueNamespace('user-order')
  const [a, b] = (await startInstances(2, { namespace, ...options })) as [MeshServer, MeshServer]
  for (const server of [a, b]) server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
  return { a, b, namespace }
}

function openDispatcher(namespace: string, sync: NonNullable<MeshServerOptions['sync']>): Dispatcher {
  const dispatcher = new Dispatcher(sharedRedis(), { namespace, sync })
  onTestFinished(() => dispatcher.close())
  return dispatcher
}

/** Dispatches 0, 1, 2, … to one user, one at a time, until stopped; can be paused between messages. */
function numberPump(dispatcher: Dispatcher, userId: string) {
  let sent = 0
  let stopped = false
  let paused: Deferred<void> | undefined
  let inFlight: Promise<void> = Promise.resolve()
  const done = (async () => {
    while (!stopped) {
      if (paused) {
        await paused.promise
        continue
      }
      inFlight = dispatcher.dispatch('n', sent, [userId]).then(() => {
        sent++
      })
      await inFlight
    }
  })()
  return {
    get sent() {
      return sent
    },
    /** Resolves once the dispatch in flight, if any, is done; no other starts until `resume`. */
    async pause(): Promise<void> {
      paused = deferred()
      await inFlight
    },
    resume(): void {
      paused?.resolve()
      paused = undefined
    },
    async stop(): Promise<void> {
      stopped = true
      paused?.resolve()
      await done
    },
  }
}

const range = (count: number): number[] => Array.from({ length: count }, (_, i) => i)

describe('user-addressed messages across the offline-to-online boundary', () => {
  it('a Dispatcher\'s numbered messages reach a user who comes online 20 times: every one, once, in order', { timeout: 60_000 }, async () => {
    // Kept only while offline: the mode where a kept message and a live one can race.
    // Paced redelivery gives live messages time to overtake it if they are not held.
    const sync = { enabled: true, keepUntilAcknowledged: false, redeliveryInterval: 1 }
    const { a, b, namespace } = await twoInstances({ sync })
    const pump = numberPump(openDispatcher(namespace, sync), 'u1')
    const received: number[] = []
    for (let round = 0; round < 20; round++) {
      // Comes online while messages keep arriving: some kept, some live.
      const client = await connectClient(round % 2 === 0 ? a : b)
      client.on<number>('n', (n) => received.push(n))
      await client.authenticate({ user: 'u1' })
      const target = pump.sent + 20
      await waitFor(() => pump.sent >= target)
      // Go offline cleanly (a close with messages in flight would lose them: that is the acknowledged mode's job).
      await pump.pause()
      const expected = range(pump.sent)
      await eventually(async () => expect(received).toEqual(expected), 5_000)
      await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
      await client.close()
      await eventually(async () => expect(await a.isUserOnline('u1')).toBe(false))
      pump.resume()
      const offlineTarget = pump.sent + 20
      await waitFor(() => pump.sent >= offlineTarget)
    }
    await pump.stop()
  })

  it.each([false, true])('routes a message to the connection that registered while the message was being kept (deterministic race; keepUntilAcknowledged: %s)', async (keepUntilAcknowledged) => {
    const { a, b } = await twoInstances({ sync: { enabled: true, keepUntilAcknowledged } })
    // a's keep step waits until u1's connection on b is registered.
    const registered = deferred()
    const entered = deferred()
    gateKeepStep(a.store, entered.resolve, registered.promise)
    const client = await connectClient(b)
    const inbox = collect(client, 'msg')
    const sending = a.send('msg', 'raced', ['u1'])
    await entered.promise
    await client.authenticate({ user: 'u1' })
    registered.resolve()
    await sending
    await eventually(async () => expect(inbox).toEqual(['raced']), 3_000)
    // Delivered once: in acknowledged mode the redelivery of the kept copy is dropped as a repeat.
    await fence(a, [client])
    expect(inbox).toEqual(['raced'])
  })
})

/** Holds the store's keep step (after it is called, before it runs) until `release` settles. */
function gateKeepStep(store: MeshStore, entered: () => void, release: Promise<void>): void {
  const keep = store.keepUserMessage.bind(store)
  store.keepUserMessage = async (...args) => {
    entered()
    await release
    return keep(...args)
  }
}

describe('acknowledged mode (sync.keepUntilAcknowledged)', () => {
  const sync = { enabled: true, keepUntilAcknowledged: true }

  it('redelivers, in order, what was written into a socket that never read it, to the next session', { timeout: 30_000 }, async () => {
    const { a, b } = await twoInstances({ sync, authenticate: upgradeUser })
    // A peer that upgraded as u1 and then stopped reading: the server's writes succeed, nobody reads them.
    const { socket } = await openNonReadingWebSocket(a.port!, '/?user=u1')
    await eventually(async () => expect(await a.isUserOnline('u1')).toBe(true))
    const messages = range(50).map((i) => `m${i}`)
    // Sent from the socket's own instance: each is written to the socket when its send resolves.
    for (const message of messages) await a.send('msg', message, ['u1'])
    // The peer dies without having read a byte.
    socket.destroy()
    await eventually(async () => expect(await a.isUserOnline('u1')).toBe(false))

    // Listening before connecting: redelivery starts as soon as the upgrade-authenticated connection is up.
    const client = createClient(urlOf(b, '/?user=u1'))
    const inbox = collect(client, 'msg')
    await client.connect()
    await eventually(async () => expect(inbox).toEqual(messages))
    // The new session acknowledged them all.
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
  })

  it('sends live messages with an id, deletes only acknowledged ones, and keeps no * send', { timeout: 30_000 }, async () => {
    const { a, b } = await twoInstances({ sync })
    const raw = await RawClient.open(a)
    await raw.hello()
    raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', { user: 'u1' }])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, { id: 'u1' }])
    for (const message of ['m1', 'm2', 'm3']) await b.send('msg', message, ['u1'])
    await b.send('msg', 'everyone', ['*'])
    const frames: unknown[][] = []
    for (let i = 0; i < 4; i++) frames.push(await raw.nextOfType(FrameType.EVENT))
    expect(frames.map((frame) => frame[2])).toEqual(['m1', 'm2', 'm3', 'everyone'])
    for (const frame of frames.slice(0, 3)) expect(typeof frame[3]).toBe('string')
    expect(frames[3]!.length).toBe(3)
    raw.send([FrameType.REQUEST, 2, 'mesh/ack', { ids: [frames[0]![3]] }])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 2, true])
    raw.socket.terminate()

    const client = await connectClient(b)
    const inbox = collect(client, 'msg')
    await client.authenticate({ user: 'u1' })
    await eventually(async () => expect(inbox).toEqual(['m2', 'm3']))
  })

  it('a client closed right after receiving acknowledges first: the next session does not get those again', { timeout: 30_000 }, async () => {
    const { a, b } = await twoInstances({ sync })
    const client = await connectClient(a)
    await client.authenticate({ user: 'u1' })
    const closed = deferred<Promise<void>>()
    let count = 0
    client.on('msg', () => {
      // Closed in the same turn as the last message arrived: its acknowledgement is still batched.
      if (++count === 3) closed.resolve(client.close())
    })
    for (const message of ['m1', 'm2', 'm3']) await b.send('msg', message, ['u1'])
    await (await closed.promise)
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
    const next = await connectClient(b)
    const inbox = collect(next, 'msg')
    await next.authenticate({ user: 'u1' })
    await b.send('msg', 'm4', ['u1'])
    await eventually(async () => expect(inbox).toEqual(['m4']))
  })

  it('separate sessions that close while messages keep coming receive every number once, in order, between them', { timeout: 60_000 }, async () => {
    const roomy = { ...sync, maxMessages: 10_000 }
    const { a, b, namespace } = await twoInstances({ sync: roomy })
    const pump = numberPump(openDispatcher(namespace, roomy), 'u1')
    const received: number[] = []
    const session = async (round: number): Promise<MeshClient> => {
      const client = createClient(round % 2 === 0 ? a : b)
      client.on<number>('n', (n) => received.push(n))
      await client.connect()
      await client.authenticate({ user: 'u1' })
      return client
    }
    for (let round = 0; round < 10; round++) {
      const client = await session(round)
      const target = received.length + 20
      await waitFor(() => received.length >= target, 10_000)
      // Closed with messages in flight: what it could not acknowledge goes to a later session.
      await client.close()
    }
    await pump.stop()
    const last = await session(10)
    const expected = range(pump.sent)
    await eventually(async () => expect(received).toEqual(expected), 10_000)
    await last.close()
  })

  it('a reconnecting client whose sockets are cut mid-stream receives every number once, in order', { timeout: 60_000 }, async () => {
    // Room for every unacknowledged message: past maxMessages the oldest are dropped (a documented loss).
    const paced = { ...sync, redeliveryInterval: 1, maxMessages: 10_000 }
    const { a, b, namespace } = await twoInstances({ sync: paced })
    const pump = numberPump(openDispatcher(namespace, paced), 'u1')
    const client = await connectClient([urlOf(a), urlOf(b)], { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: number[] = []
    client.on<number>('n', (n) => received.push(n))
    await client.authenticate({ user: 'u1' })
    for (let cut = 0; cut < 20; cut++) {
      const target = received.length + 25
      await waitFor(() => received.length >= target, 10_000)
      // No close frame: whatever the server wrote meanwhile is lost with the socket.
      const server = [a, b].find((s) => s.connections.has(client.id!))
      server?.connections.get(client.id!)?.terminate()
      await waitFor(() => !server?.connections.has(client.id!))
    }
    await pump.stop()
    const expected = range(pump.sent)
    await eventually(async () => expect(received).toEqual(expected), 10_000)
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
  })
})

describe('a redelivery whose read fails', () => {
  it('is retried while the connection is open, and newer live messages still wait behind the kept ones', { timeout: 30_000 }, async () => {
    const { a } = await twoInstances({ sync: { enabled: true } })
    for (const message of ['k1', 'k2', 'k3']) await a.send('msg', message, ['u1'])
    // The first reads fail as they do while Redis is away; a live message arrives meanwhile.
    const read = a.store.getPendingMessages.bind(a.store)
    const failures = deferred()
    let failed = 0
    a.store.getPendingMessages = async (...args) => {
      if (failed < 3) {
        if (++failed === 3) failures.resolve()
        throw new MeshError(ErrorCode.UNAVAILABLE, 'store away')
      }
      return read(...args)
    }
    const client = await connectClient(a)
    const inbox = collect(client, 'msg')
    await client.authenticate({ user: 'u1' })
    await a.send('msg', 'live', ['u1'])
    await failures.promise
    await eventually(async () => expect(inbox).toEqual(['k1', 'k2', 'k3', 'live']), 10_000)
  })

  it('closes with 1013 a connection whose held events outgrow maxBufferedBytes while the read keeps failing', async () => {
    const { a } = await twoInstances({ sync: { enabled: true }, maxBufferedBytes: 4_096 })
    a.store.getPendingMessages = async () => {
      throw new MeshError(ErrorCode.UNAVAILABLE, 'store away')
    }
    const client = await connectClient(a, { shouldReconnect: false })
    const disconnected = nextEvent<{ code: number }>(client, 'disconnect')
    await client.authenticate({ user: 'u1' })
    for (let i = 0; i < 8; i++) await a.broadcast('big', 'x'.repeat(1_024))
    expect((await disconnected).code).toBe(CloseCode.TRY_AGAIN_LATER)
  })
})

describe('the bounds of kept messages', () => {
  it('reports, through the logger, kept messages dropped unacknowledged for maxMessages', async () => {
    const warnings: Array<[string, unknown]> = []
    const logger = { warn: (message: string, context?: unknown) => warnings.push([message, context]) }
    const { a } = await twoInstances({ sync: { enabled: true, maxMessages: 2 }, logger })
    for (const message of ['m1', 'm2', 'm3', 'm4']) await a.send('msg', message, ['u1'])
    expect((await a.store.getPendingMessages('u1', 60_000)).length).toBe(2)
    expect(warnings.map(([, context]) => context)).toEqual([
      { userId: 'u1', dropped: 1 },
      { userId: 'u1', dropped: 1 },
    ])
  })
})

function upgradeUser(request: IncomingMessage): unknown {
  const user = new URL(request.url ?? '/', 'http://x').searchParams.get('user')
  return user === null ? null : { id: user }
}
