import { setImmediate as turn } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { CloseCode, FrameType } from '../src/shared/protocol.js'
import { uniqueNamespace } from './support/cluster.js'
import { RawClient, deferred, startServer, type Deferred } from './support/harness.js'

// Sockets cut at chosen moments while something is being done for them: an
// authentication being decided, a metadata merge or a room join between its read
// and its write. Whatever the moment, nothing the connection registered may stay.

const redisUrl = inject('redisUrl')
let admin: Redis
beforeAll(async () => {
  admin = new Redis(redisUrl)
})
afterAll(async () => {
  await admin.quit()
})

/**
 * A real Redis store that can hold a lookup after it has read, so that the caller
 * goes on with what it read after the socket was cut (the window of defect 5).
 */
class PausingRedisStore extends RedisStore {
  pause: ((connectionIds: readonly string[]) => Promise<void>) | undefined

  override async getMetadata(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    const values = await super.getMetadata(connectionIds)
    await this.pause?.(connectionIds)
    return values
  }

  override async getConnectionInstances(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    const owners = await super.getConnectionInstances(connectionIds)
    await this.pause?.(connectionIds)
    return owners
  }
}

/** Two instances on the run's Redis under one namespace, each on a pausing store. */
async function twoInstances(configure?: (server: MeshServer) => void) {
  const namespace = uniqueNamespace('races')
  const stores: PausingRedisStore[] = []
  const servers: MeshServer[] = []
  for (let i = 0; i < 2; i++) {
    const client = createRedisClient(redisUrl, { commandTimeout: 5_000 })
    client.on('error', () => {})
    await whenReady(client, 5_000)
    const store = new PausingRedisStore(client, new Keys(namespace))
    stores.push(store)
    servers.push(await startServer({ redis: redisUrl, namespace, instanceTtl: 5_000, store }, configure))
  }
  return { namespace, stores, servers: servers as [MeshServer, MeshServer] }
}

/** Per connection id: a promise resolved by whoever sees that moment first. */
function moments(): (id: string) => Deferred<void> {
  const map = new Map<string, Deferred<void>>()
  return (id) => {
    let entry = map.get(id)
    if (!entry) map.set(id, (entry = deferred()))
    return entry
  }
}

/** Keys of a namespace left in Redis, with what they hold, skipping instance bookkeeping. */
async function leftovers(namespace: string): Promise<Record<string, number>> {
  const found: Record<string, number> = {}
  for (const key of await admin.keys(`${namespace}:*`)) {
    // <ns>:{<kind>:<name>}:<what>, or <ns>:{<ns>}:<what> for keys of the whole namespace
    const [, tag = '', what = ''] = /^\{([^}]*)\}:(.*)$/.exec(key.slice(namespace.length + 1)) ?? []
    const kind = tag === namespace ? what : `${tag.split(':')[0]}:${what}`
    if (kind.startsWith('inst:') || kind === 'instances') continue
    const type = await admin.type(key)
    const size = type === 'hash' ? await admin.hlen(key) : type === 'set' ? await admin.scard(key) : 1
    if (size > 0) found[kind] = (found[kind] ?? 0) + size
  }
  return found
}

async function openRaw(server: MeshServer, count: number): Promise<Array<{ raw: RawClient; id: string }>> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const raw = await RawClient.open(server)
      const hello = await raw.hello()
      return { raw, id: hello[2] as string }
    }),
  )
}

/** The next reply (response or error), skipping pings and latency frames. */
async function reply(raw: RawClient): Promise<unknown[]> {
  for (;;) {
    const frame = (await raw.next()) as unknown[]
    if (frame[0] === FrameType.RESPONSE || frame[0] === FrameType.ERROR) return frame
  }
}

describe('a socket cut while its authentication is decided', () => {
  it('leaves no user online, on any instance, also after a graceful close (100 of 100 were ghosts)', { timeout: 30_000 }, async () => {
    const entered = moments()
    const gone = moments()
    const { namespace, servers } = await twoInstances((server) =>
      server.onAuthenticate(async (credentials, connection) => {
        entered(connection.id).resolve()
        // The "database lookup" ends only once the server has finished with the closed socket.
        await gone(connection.id).promise
        return { id: (credentials as { user: string }).user }
      }),
    )
    const [a, b] = servers
    const settled: Array<Promise<void>> = []
    a.onDisconnection((connection) => gone(connection.id).resolve())
    a.addMiddleware((ctx) => {
      // Lets the test know when each authentication has run to its end.
      if (ctx.command === 'mesh/authenticate') settled.push(gone(ctx.connection.id).promise.then(() => turn()).then(() => undefined))
    })
    const clients = await openRaw(a, 100)
    await Promise.all(
      clients.map(async ({ raw, id }, index) => {
        raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', { user: `u${index}` }])
        await entered(id).promise
        raw.socket.terminate()
      }),
    )
    await Promise.all(settled)
    // A's own store answers after any write its authentications queued.
    const online = await Promise.all(clients.map((_, index) => a.isUserOnline(`u${index}`)))
    expect(online.filter(Boolean)).toHaveLength(0)
    expect(await b.getConnectedUsers()).toEqual([])
    expect(await leftovers(namespace)).toEqual({})
    await a.close()
    expect(await b.getConnectedUsers()).toEqual([])
    expect(await leftovers(namespace)).toEqual({})
  })

  it('leaves no ghost when a 20 ms onAuthenticate meets sockets cut right after they ask', { timeout: 30_000 }, async () => {
    const decided: Array<Promise<unknown>> = []
    const { namespace, servers } = await twoInstances((server) =>
      server.onAuthenticate((credentials) => {
        // A database lookup of 20 ms.
        const lookup = new Promise((resolve) => setTimeout(resolve, 20)).then(() => ({ id: (credentials as { user: string }).user }))
        decided.push(lookup)
        return lookup
      }),
    )
    const [a, b] = servers
    const disconnected = deferred()
    let left = 100
    a.onDisconnection(() => {
      if (--left === 0) disconnected.resolve()
    })
    const clients = await openRaw(a, 100)
    for (const [index, { raw }] of clients.entries()) {
      raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', { user: `u${index}` }])
      raw.socket.terminate()
    }
    // Frames are handled before their socket's close: every lookup has started by now.
    await disconnected.promise
    await Promise.all(decided)
    await turn()
    expect(decided.length).toBeGreaterThan(0)
    const online = await Promise.all(clients.map((_, index) => a.isUserOnline(`u${index}`)))
    expect(online.filter(Boolean)).toHaveLength(0)
    expect(await b.getConnectedUsers()).toEqual([])
    expect(await leftovers(namespace)).toEqual({})
  })
})

describe('one authentication at a time per connection', () => {
  it('registers a connection under at most one user when two authentications race (50 of 50 had both)', async () => {
    const server = await startServer({ redis: redisUrl, namespace: uniqueNamespace('races-double') }, (s) =>
      s.onAuthenticate(async (credentials) => {
        await turn()
        return { id: (credentials as { user: string }).user }
      }),
    )
    const clients = await openRaw(server, 50)
    const outcomes = await Promise.all(
      clients.map(async ({ raw }, index) => {
        raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', { user: `a${index}` }])
        raw.send([FrameType.REQUEST, 2, 'mesh/authenticate', { user: `b${index}` }])
        const replies = [await reply(raw), await reply(raw)]
        return replies.map((frame) => (frame[0] === FrameType.RESPONSE ? 'ok' : frame[2]))
      }),
    )
    for (const outcome of outcomes) {
      expect(outcome.filter((result) => result === 'ok')).toHaveLength(1)
      expect(outcome.filter((result) => result !== 'ok').every((code) => code === ErrorCode.AUTH_IN_PROGRESS || code === ErrorCode.FORBIDDEN)).toBe(true)
    }
    for (const [index, { id }] of clients.entries()) {
      const [asA, asB] = await server.store.getUserConnections([`a${index}`, `b${index}`])
      expect([...asA!, ...asB!]).toEqual([id])
      expect(server.connections.get(id)!.userId).toBe(asA!.length === 1 ? `a${index}` : `b${index}`)
    }
  })

  it('lets one of 400 pipelined guesses reach the handler before the 4001 close (400 did)', async () => {
    let calls = 0
    const server = await startServer({}, (s) =>
      s.onAuthenticate(async () => {
        calls++
        await turn()
        return null
      }),
    )
    const [{ raw }] = (await openRaw(server, 1)) as [{ raw: RawClient; id: string }]
    for (let id = 1; id <= 400; id++) raw.send([FrameType.REQUEST, id, 'mesh/authenticate', { password: `guess-${id}` }])
    expect((await raw.closed).code).toBe(CloseCode.AUTH_FAILED)
    expect(calls).toBe(1)
  })
})

describe('a socket cut while metadata or a room is being written for it', () => {
  it('leaves no metadata and no room member in Redis after a storm of 250, from the owner and from another instance', { timeout: 30_000 }, async () => {
    const { namespace, stores, servers } = await twoInstances()
    const [a, b] = servers
    const gone = moments()
    const allPaused = moments()
    a.onDisconnection((connection) => gone(connection.id).resolve())
    const clients = await openRaw(a, 250)
    // Each connection's two lookups before the cut: the merge's (on A it reads the
    // metadata, on B it looks up the owner first) and B's addToRoom owner lookup.
    const expected = new Map(clients.map(({ id }) => [id, 2]))
    for (const store of stores) {
      store.pause = async ([id]) => {
        const left = id === undefined ? undefined : expected.get(id)
        if (left === undefined) return
        expected.set(id!, left - 1)
        if (left === 1) allPaused(id!).resolve()
        await gone(id!).promise
      }
    }
    const results = clients.map(({ id }, index) => {
      // The merge reads (paused), the socket is cut, the merge writes.
      const merging = (index % 2 === 0 ? a : b).connectionManager.setMetadata(id, { index }, { strategy: 'merge' })
      // Another instance looks up the owner (paused), the socket is cut, it adds.
      const joining = b.addToRoom('storm', id)
      return Promise.allSettled([merging, joining])
    })
    await Promise.all(
      clients.map(async ({ raw, id }) => {
        await allPaused(id).promise
        raw.socket.terminate()
      }),
    )
    const outcomes = (await Promise.all(results)).flat().map((result) => (result.status === 'fulfilled' ? 'written' : (result.reason as MeshError).code))
    expect(await leftovers(namespace)).toEqual({})
    expect(outcomes.filter((outcome) => outcome !== ErrorCode.NOT_FOUND)).toEqual([])
    expect(await a.connectionManager.getAllMetadata()).toEqual([])
    expect(await b.getRoomMembers('storm')).toEqual([])
  })
})

describe('ctx.signal', () => {
  it('aborts, with CONNECTION_CLOSED, when the client goes while a handler waits', async () => {
    const started = deferred<AbortSignal>()
    const aborted = deferred<unknown>()
    const server = await startServer({}, (s) => {
      s.registerCommand('wait', (ctx) => {
        started.resolve(ctx.signal)
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason))
        return new Promise(() => {})
      })
      s.registerCommand('signal-of', (ctx) => ctx.signal === ctx.connection.signal && !ctx.signal.aborted)
    })
    const [{ raw }] = (await openRaw(server, 1)) as [{ raw: RawClient; id: string }]
    raw.send([FrameType.REQUEST, 1, 'signal-of', null])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, true])
    raw.send([FrameType.REQUEST, 2, 'wait', null])
    const signal = await started.promise
    expect(signal.aborted).toBe(false)
    raw.socket.terminate()
    const reason = await aborted.promise
    expect(reason).toBeInstanceOf(MeshError)
    expect((reason as MeshError).code).toBe(ErrorCode.CONNECTION_CLOSED)
  })
})
