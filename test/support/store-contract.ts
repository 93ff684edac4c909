import { randomUUID } from 'node:crypto'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { BusHandler, MeshBus, MeshStore } from 'meshkit/server'
import { decodeChannelEntry } from '../../src/server/store/channel-entry.js'
import type { Keys } from '../../src/server/store/keys.js'
import { eventually, waitFor } from './harness.js'

/**
 * Makes a store. Without a namespace the store must be private to the calling test
 * (its own unique namespace); with one, stores made with different namespaces must
 * not see each other's state.
 */
export type CreateStore = (namespace?: string) => MeshStore | Promise<MeshStore>
export type CreateBus = () => MeshBus | Promise<MeshBus>

/** Ids that break naive object maps and key schemes. */
const awkwardIds = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'a:b', 'with space', 'x:rooms', 'ünï cödé']

/**
 * Polls an asynchronous probe until `accept` holds, for state that changes with time
 * and has no event (expiry). Like `waitFor`, it checks every few milliseconds and
 * fails after `timeout`.
 */
export async function until<T>(probe: () => Promise<T>, accept: (value: T) => boolean, timeout = 5_000): Promise<T> {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await probe()
    if (accept(value)) return value
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms (last value: ${JSON.stringify(value)})`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const sorted = (values: readonly string[]): string[] => [...values].sort()

/** Per-connection writes need a registered connection: registers these under one instance. */
async function registered(store: MeshStore, ids: readonly string[], instanceId = 'i1'): Promise<void> {
  for (const id of ids) await store.addConnection(id, instanceId)
}

/** Keeps a message only for an offline user (sync without keepUntilAcknowledged): whether it was kept. */
async function keptIfOffline(store: MeshStore, userId: string, message: Uint8Array, maxMessages: number, maxAge: number): Promise<boolean> {
  const kept = await store.keepUserMessage(userId, message, true, maxMessages, maxAge)
  expect(kept.id === undefined).toBe(kept.connections.length > 0)
  return kept.id !== undefined
}

/** The behaviour every MeshStore must share; run against each implementation. */
export function describeStoreContract(name: string, create: CreateStore): void {
  describe(`${name} store contract`, () => {
    async function open(namespace?: string): Promise<MeshStore> {
      const store = await create(namespace)
      onTestFinished(() => store.close())
      return store
    }

    describe('instances', () => {
      it('registers a live instance that refreshes and is not dead', async () => {
        const store = await open()
        await store.registerInstance('i1', 60_000)
        expect(await store.refreshInstance('i1', 60_000)).toBe(true)
        expect(await store.getDeadInstances()).toEqual([])
      })

      it('refuses to refresh an instance that never registered', async () => {
        const store = await open()
        expect(await store.refreshInstance('ghost', 60_000)).toBe(false)
        // A failed refresh does not register the instance either.
        expect(await store.getDeadInstances()).toEqual([])
      })

      it('lists an instance as dead once its ttl passes, and then refuses to refresh it', async () => {
        const store = await open()
        await store.registerInstance('alive', 60_000)
        await store.registerInstance('short', 50)
        expect(await until(() => store.getDeadInstances(), (dead) => dead.includes('short'))).toEqual(['short'])
        expect(await store.refreshInstance('short', 60_000)).toBe(false)
        // The failed refresh left it dead; the live one is untouched.
        expect(await store.getDeadInstances()).toEqual(['short'])
        expect(await store.refreshInstance('alive', 60_000)).toBe(true)
      })

      it('brings a dead instance back when it registers again', async () => {
        const store = await open()
        await store.registerInstance('i1', 50)
        await until(() => store.getDeadInstances(), (dead) => dead.includes('i1'))
        await store.registerInstance('i1', 60_000)
        expect(await store.getDeadInstances()).toEqual([])
        expect(await store.refreshInstance('i1', 60_000)).toBe(true)
      })

      it('extends liveness on refresh', async () => {
        const store = await open()
        // Both would expire together; only the refreshed one may outlive its first ttl.
        // (A longer ttl here: the refresh must land before the first one runs out, even on a busy machine.)
        await store.registerInstance('refreshed', 1_000)
        await store.registerInstance('left', 1_000)
        expect(await store.refreshInstance('refreshed', 60_000)).toBe(true)
        await until(() => store.getDeadInstances(), (dead) => dead.includes('left'))
        expect(await store.getDeadInstances()).toEqual(['left'])
      })

      it('forgets an unregistered instance: no longer listed, refreshed or indexed', async () => {
        const store = await open()
        await store.registerInstance('gone', 50)
        await store.registerInstance('live-gone', 60_000)
        await store.registerInstance('witness', 50)
        await store.addConnection('c1', 'gone')
        await until(() => store.getDeadInstances(), (dead) => dead.includes('gone') && dead.includes('witness'))
        await store.removeConnection('c1')
        await store.unregisterInstance('gone')
        await store.unregisterInstance('live-gone')
        // 'witness' expired with 'gone'; an unregistered live instance must not turn up dead later either.
        expect(await store.getDeadInstances()).toEqual(['witness'])
        expect(await store.refreshInstance('gone', 60_000)).toBe(false)
        expect(await store.refreshInstance('live-gone', 60_000)).toBe(false)
        expect(await store.getInstanceConnections('gone')).toEqual([])
      })

      it('drops the connection index of an unregistered instance', async () => {
        const store = await open()
        await store.registerInstance('i1', 60_000)
        await store.addConnection('c1', 'i1')
        await store.addConnection('c2', 'i1')
        await store.unregisterInstance('i1')
        expect(await store.getInstanceConnections('i1')).toEqual([])
      })

      it('lists every registered instance with when it was last seen while alive, and its connection count', async () => {
        const store = await open()
        expect(await store.listInstances()).toEqual([])
        const before = Date.now()
        await store.registerInstance('busy', 60_000)
        await store.registerInstance('idle', 60_000)
        await store.registerInstance('expiring', 50)
        await registered(store, ['c1', 'c2'], 'busy')
        await registered(store, ['c3'], 'expiring')
        const listed = await until(() => store.listInstances(), (list) => list.find((entry) => entry.id === 'expiring')?.lastSeen === undefined)
        const byId = new Map(listed.map((entry) => [entry.id, entry]))
        expect([...byId.keys()].sort()).toEqual(['busy', 'expiring', 'idle'])
        expect(byId.get('busy')!.connections).toBe(2)
        expect(byId.get('idle')!.connections).toBe(0)
        // Expired but not cleaned up: still listed, with its index, and no longer seen.
        expect(byId.get('expiring')).toEqual({ id: 'expiring', lastSeen: undefined, connections: 1 })
        for (const id of ['busy', 'idle']) {
          expect(byId.get(id)!.lastSeen).toBeGreaterThanOrEqual(before)
          expect(byId.get(id)!.lastSeen).toBeLessThanOrEqual(Date.now())
        }
        const seen = byId.get('busy')!.lastSeen!
        await until(async () => Date.now(), (now) => now > seen)
        expect(await store.refreshInstance('busy', 60_000)).toBe(true)
        const refreshed = (await store.listInstances()).find((entry) => entry.id === 'busy')
        expect(refreshed!.lastSeen).toBeGreaterThan(seen)
        await store.unregisterInstance('idle')
        expect((await store.listInstances()).map((entry) => entry.id).sort()).toEqual(['busy', 'expiring'])
      })

      it('treats unregistering an unknown instance as a no-op', async () => {
        const store = await open()
        await store.registerInstance('i1', 50)
        await store.unregisterInstance('nobody')
        expect(await until(() => store.getDeadInstances(), (dead) => dead.length > 0)).toEqual(['i1'])
      })

      it('lets one claim of a cleanup through while it is held', async () => {
        const store = await open()
        expect(await store.claimCleanup('dead1', 60_000)).toBe(true)
        expect(await store.claimCleanup('dead1', 60_000)).toBe(false)
        expect(await store.claimCleanup('dead1', 60_000)).toBe(false)
        // Claims are per instance.
        expect(await store.claimCleanup('dead2', 60_000)).toBe(true)
      })

      it('gives the cleanup claim out again once its ttl passes', async () => {
        const store = await open()
        expect(await store.claimCleanup('dead1', 50)).toBe(true)
        await until(() => store.claimCleanup('dead1', 60_000), (claimed) => claimed)
        expect(await store.claimCleanup('dead1', 60_000)).toBe(false)
      })

      it('keeps instance ids that extend one another apart', async () => {
        const store = await open()
        const ids = ['i', 'i:connections', 'i:cleanup', 'i:x']
        for (const id of ids) await store.registerInstance(id, 60_000)
        for (const [index, id] of ids.entries()) await store.addConnection(`c${index}`, id)
        for (const [index, id] of ids.entries()) expect(await store.getInstanceConnections(id)).toEqual([`c${index}`])
        for (const id of ids) expect(await store.refreshInstance(id, 60_000)).toBe(true)
        for (const id of ids) expect(await store.claimCleanup(id, 60_000)).toBe(true)
        expect(await store.getDeadInstances()).toEqual([])
      })

      it('handles awkward instance ids', async () => {
        const store = await open()
        for (const id of awkwardIds) await store.registerInstance(id, 50)
        await store.registerInstance('alive', 60_000)
        const dead = await until(() => store.getDeadInstances(), (list) => list.length >= awkwardIds.length)
        expect(sorted(dead)).toEqual(sorted(awkwardIds))
        for (const id of awkwardIds) expect(await store.refreshInstance(id, 60_000)).toBe(false)
        for (const id of awkwardIds) expect(await store.claimCleanup(id, 60_000)).toBe(true)
        for (const id of awkwardIds) expect(await store.claimCleanup(id, 60_000)).toBe(false)
        for (const id of awkwardIds) await store.unregisterInstance(id)
        expect(await store.getDeadInstances()).toEqual([])
        expect(await store.refreshInstance('alive', 60_000)).toBe(true)
      })
    })

    describe('connections', () => {
      it('records which instance owns each connection, in the order asked', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.addConnection('c2', 'i1')
        await store.addConnection('c3', 'i2')
        expect(await store.getConnectionInstances(['c3', 'unknown', 'c1', 'c2', 'c1'])).toEqual(['i2', undefined, 'i1', 'i1', 'i1'])
        expect(await store.getConnectionInstances(['nobody'])).toEqual([undefined])
        expect(await store.getConnectionInstances([])).toEqual([])
        expect(sorted(await store.getInstanceConnections('i1'))).toEqual(['c1', 'c2'])
        expect(await store.getInstanceConnections('i2')).toEqual(['c3'])
        expect(await store.getInstanceConnections('i3')).toEqual([])
      })

      it('does not duplicate a connection added twice to the same instance', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.addConnection('c1', 'i1')
        expect(await store.getInstanceConnections('i1')).toEqual(['c1'])
        await store.removeConnection('c1')
        expect(await store.getInstanceConnections('i1')).toEqual([])
      })

      it('moves a connection re-added under another instance', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.addConnection('c1', 'i2')
        expect(await store.getConnectionInstances(['c1'])).toEqual(['i2'])
        expect(await store.getInstanceConnections('i2')).toEqual(['c1'])
        expect(await store.getInstanceConnections('i1')).toEqual([])
      })

      it('forgets a removed connection everywhere: owner, instance index, metadata and rooms', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.addConnection('c2', 'i1')
        await store.setMetadata('c1', '{"user":1}')
        await store.setMetadata('c2', '{"user":2}')
        await store.addToRoom('r1', 'c1')
        await store.addToRoom('r2', 'c1')
        await store.addToRoom('r1', 'c2')

        await store.removeConnection('c1')

        expect(await store.getConnectionInstances(['c1', 'c2'])).toEqual([undefined, 'i1'])
        expect(await store.getInstanceConnections('i1')).toEqual(['c2'])
        expect(await store.getMetadata(['c1', 'c2'])).toEqual([undefined, '{"user":2}'])
        expect(await store.getAllMetadata()).toEqual(new Map([['c2', '{"user":2}']]))
        expect(await store.getConnectionRooms('c1')).toEqual([])
        expect(await store.isInRoom('r1', 'c1')).toBe(false)
        expect(await store.isInRoom('r2', 'c1')).toBe(false)
        expect(await store.getRoomMembers('r1')).toEqual(['c2'])
        expect(await store.getRoomMembers('r2')).toEqual([])
        expect(await store.getConnectionRooms('c2')).toEqual(['r1'])
        expect(await store.removeFromAllRooms('c1')).toEqual([])
      })

      it('writes no metadata, room or user for a connection that has no owner, and says so', async () => {
        const store = await open()
        expect(await store.setMetadata('c1', 'm')).toBe(false)
        expect(await store.addToRoom('r1', 'c1')).toBe(false)
        expect(await store.addUserConnection('u1', 'c1', true)).toBe(false)
        expect(await store.getMetadata(['c1'])).toEqual([undefined])
        expect(await store.getAllMetadata()).toEqual(new Map())
        expect(await store.getRoomMembers('r1')).toEqual([])
        expect(await store.getConnectionRooms('c1')).toEqual([])
        expect(await store.getUserConnections(['u1'])).toEqual([[]])
        expect(await store.getOnlineUsers()).toEqual([])
      })

      it('ignores writes that arrive after a connection was removed (a socket closed mid-way)', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        expect(await store.setMetadata('c1', 'before')).toBe(true)
        expect(await store.addToRoom('r1', 'c1')).toBe(true)
        expect(await store.addUserConnection('u1', 'c1', true)).toBe(true)
        await store.removeConnection('c1')
        // The late writes of an authentication, a merge or a join that were still running.
        const late = await Promise.all([store.addUserConnection('u1', 'c1', true), store.setMetadata('c1', 'after'), store.addToRoom('r2', 'c1')])
        expect(late).toEqual([false, false, false])
        expect(await store.getUserConnections(['u1'])).toEqual([[]])
        expect(await store.getOnlineUsers()).toEqual([])
        expect(await store.getAllMetadata()).toEqual(new Map())
        expect(await store.getRoomMembers('r1')).toEqual([])
        expect(await store.getRoomMembers('r2')).toEqual([])
        expect(await store.getConnectionRooms('c1')).toEqual([])
        // Registered again (the monitor writing back after an outage), it takes writes again.
        await store.addConnection('c1', 'i1')
        expect(await store.addUserConnection('u1', 'c1', true)).toBe(true)
        expect(await store.getOnlineUsers()).toEqual(['u1'])
      })

      it('treats removing an unknown connection as a no-op', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.setMetadata('c1', 'm')
        await store.addToRoom('r1', 'c1')
        await store.removeConnection('nobody')
        await store.removeConnection('c1')
        await store.removeConnection('c1')
        expect(await store.getConnectionInstances(['c1', 'nobody'])).toEqual([undefined, undefined])
        expect(await store.getInstanceConnections('i1')).toEqual([])
        expect(await store.getAllMetadata()).toEqual(new Map())
        expect(await store.getRoomMembers('r1')).toEqual([])
      })

      it('keeps awkward names as ordinary connection and instance ids', async () => {
        const store = await open()
        for (const [index, id] of awkwardIds.entries()) await store.addConnection(id, awkwardIds[awkwardIds.length - 1 - index]!)
        expect(await store.getConnectionInstances(awkwardIds)).toEqual([...awkwardIds].reverse())
        for (const id of awkwardIds) {
          const owner = awkwardIds[awkwardIds.length - 1 - awkwardIds.indexOf(id)]!
          expect(await store.getInstanceConnections(owner)).toEqual([id])
        }
        expect(await store.getConnectionInstances(['__proto__x', 'valueOf', 'a', 'b', 'x'])).toEqual([undefined, undefined, undefined, undefined, undefined])
        for (const id of awkwardIds) await store.removeConnection(id)
        expect(await store.getConnectionInstances(awkwardIds)).toEqual(awkwardIds.map(() => undefined))
        for (const id of awkwardIds) expect(await store.getInstanceConnections(id)).toEqual([])
      })
    })

    describe('metadata', () => {
      it('stores, replaces and reads metadata, in the order asked', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2', 'c3'])
        await store.setMetadata('c1', '{"n":1}')
        await store.setMetadata('c2', '')
        await store.setMetadata('c3', 'ünï 😀 "quoted" \n line')
        await store.setMetadata('c1', '{"n":2}')
        expect(await store.getMetadata(['c3', 'nobody', 'c1', 'c2'])).toEqual(['ünï 😀 "quoted" \n line', undefined, '{"n":2}', ''])
        expect(await store.getMetadata(['nobody'])).toEqual([undefined])
        expect(await store.getMetadata([])).toEqual([])
      })

      it('returns every connection metadata as a Map', async () => {
        const store = await open()
        const empty = await store.getAllMetadata()
        expect(empty).toBeInstanceOf(Map)
        expect(empty.size).toBe(0)
        await registered(store, ['c1', 'c2'])
        await store.setMetadata('c1', 'a')
        await store.setMetadata('c2', 'b')
        await store.setMetadata('c1', 'c')
        const all = await store.getAllMetadata()
        expect(all).toBeInstanceOf(Map)
        expect(all).toEqual(new Map([['c1', 'c'], ['c2', 'b']]))
      })

      it('keeps metadata apart from connection ownership', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.setMetadata('c1', 'i2')
        expect(await store.getConnectionInstances(['c1'])).toEqual(['i1'])
        expect(await store.getMetadata(['c1'])).toEqual(['i2'])
        await store.addConnection('c1', 'i3')
        expect(await store.getMetadata(['c1'])).toEqual(['i2'])
      })

      it('keeps awkward names as ordinary connection ids', async () => {
        const store = await open()
        await registered(store, awkwardIds)
        for (const [index, id] of awkwardIds.entries()) await store.setMetadata(id, `m${index}`)
        expect(await store.getMetadata(awkwardIds)).toEqual(awkwardIds.map((_, index) => `m${index}`))
        const all = await store.getAllMetadata()
        expect(all).toBeInstanceOf(Map)
        expect(sorted([...all.keys()])).toEqual(sorted(awkwardIds))
        for (const [index, id] of awkwardIds.entries()) expect(all.get(id)).toBe(`m${index}`)
        expect(await store.getMetadata(['valueOf'])).toEqual([undefined])
      })
    })

    describe('rooms', () => {
      it('adds, checks and lists members both ways', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2'])
        await store.addToRoom('r1', 'c1')
        await store.addToRoom('r1', 'c2')
        await store.addToRoom('r2', 'c1')
        await store.addToRoom('r1', 'c1')
        expect(await store.isInRoom('r1', 'c1')).toBe(true)
        expect(await store.isInRoom('r1', 'c2')).toBe(true)
        expect(await store.isInRoom('r2', 'c2')).toBe(false)
        expect(await store.isInRoom('r3', 'c1')).toBe(false)
        expect(sorted(await store.getRoomMembers('r1'))).toEqual(['c1', 'c2'])
        expect(await store.getRoomMembers('r2')).toEqual(['c1'])
        expect(await store.getRoomMembers('r3')).toEqual([])
        expect(sorted(await store.getConnectionRooms('c1'))).toEqual(['r1', 'r2'])
        expect(await store.getConnectionRooms('c2')).toEqual(['r1'])
        expect(await store.getConnectionRooms('c3')).toEqual([])
      })

      it('removes a connection from one room only', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2'])
        await store.addToRoom('r1', 'c1')
        await store.addToRoom('r2', 'c1')
        await store.addToRoom('r1', 'c2')
        await store.removeFromRoom('r1', 'c1')
        expect(await store.isInRoom('r1', 'c1')).toBe(false)
        expect(await store.isInRoom('r2', 'c1')).toBe(true)
        expect(await store.getRoomMembers('r1')).toEqual(['c2'])
        expect(await store.getConnectionRooms('c1')).toEqual(['r2'])
        // Leaving a room one is not in, or an unknown room, changes nothing.
        await store.removeFromRoom('r1', 'c1')
        await store.removeFromRoom('r9', 'c1')
        await store.removeFromRoom('r2', 'c9')
        expect(await store.getConnectionRooms('c1')).toEqual(['r2'])
        expect(await store.getRoomMembers('r2')).toEqual(['c1'])
        // The last member leaving empties the room.
        await store.removeFromRoom('r1', 'c2')
        expect(await store.getRoomMembers('r1')).toEqual([])
        expect(await store.getConnectionRooms('c2')).toEqual([])
      })

      it('removes a connection from every room and resolves with the rooms it left', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2'])
        await store.addToRoom('r1', 'c1')
        await store.addToRoom('r2', 'c1')
        await store.addToRoom('r3', 'c1')
        await store.addToRoom('r1', 'c2')
        await store.removeFromRoom('r3', 'c1')
        expect(sorted(await store.removeFromAllRooms('c1'))).toEqual(['r1', 'r2'])
        expect(await store.getConnectionRooms('c1')).toEqual([])
        expect(await store.isInRoom('r1', 'c1')).toBe(false)
        expect(await store.isInRoom('r2', 'c1')).toBe(false)
        expect(await store.getRoomMembers('r1')).toEqual(['c2'])
        expect(await store.getRoomMembers('r2')).toEqual([])
        expect(await store.getConnectionRooms('c2')).toEqual(['r1'])
        expect(await store.removeFromAllRooms('c1')).toEqual([])
        expect(await store.removeFromAllRooms('nobody')).toEqual([])
      })

      it('keeps room membership apart from connection ownership', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.setMetadata('c1', 'm')
        await store.addToRoom('r1', 'c1')
        await store.removeFromAllRooms('c1')
        expect(await store.getConnectionInstances(['c1'])).toEqual(['i1'])
        expect(await store.getInstanceConnections('i1')).toEqual(['c1'])
        expect(await store.getMetadata(['c1'])).toEqual(['m'])
      })

      it('keeps awkward names as ordinary room names and connection ids', async () => {
        const store = await open()
        await registered(store, awkwardIds)
        for (const room of awkwardIds) for (const id of awkwardIds) await store.addToRoom(room, id)
        for (const room of awkwardIds) {
          expect(sorted(await store.getRoomMembers(room))).toEqual(sorted(awkwardIds))
          expect(await store.isInRoom(room, 'valueOf')).toBe(false)
        }
        for (const id of awkwardIds) expect(sorted(await store.getConnectionRooms(id))).toEqual(sorted(awkwardIds))
        expect(await store.getRoomMembers('valueOf')).toEqual([])
        expect(await store.getRoomMembers('a')).toEqual([])
        expect(await store.getConnectionRooms('x')).toEqual([])

        await store.removeFromRoom('a:b', '__proto__')
        expect(await store.isInRoom('a:b', '__proto__')).toBe(false)
        expect(await store.isInRoom('__proto__', 'a:b')).toBe(true)
        const left = await store.removeFromAllRooms('constructor')
        expect(sorted(left)).toEqual(sorted(awkwardIds))
        for (const room of awkwardIds) expect(await store.isInRoom(room, 'constructor')).toBe(false)
        await store.removeConnection('with space')
        for (const room of awkwardIds) expect(await store.isInRoom(room, 'with space')).toBe(false)
        expect(await store.getConnectionRooms('x:rooms')).toHaveLength(awkwardIds.length)
        expect(sorted(await store.getRoomMembers('x:rooms'))).toEqual(sorted(awkwardIds.filter((id) => id !== 'constructor' && id !== 'with space')))
      })
    })

    describe('presence', () => {
      it('sets, replaces, lists and removes entries per room', async () => {
        const store = await open()
        await store.setPresence('r1', 'c1', 'a')
        await store.setPresence('r1', 'c2', 'b')
        await store.setPresence('r2', 'c1', 'x')
        await store.setPresence('r1', 'c1', 'a2')
        expect(await store.getPresence('r1')).toEqual(new Map([['c1', 'a2'], ['c2', 'b']]))
        expect(await store.removePresence('r1', 'c2')).toBe('b')
        expect(await store.removePresence('r1', 'c2')).toBeUndefined()
        expect(await store.getPresence('r1')).toEqual(new Map([['c1', 'a2']]))
        expect(await store.getPresence('nowhere')).toEqual(new Map())
      })

      it('removes a connection from every room with its entries, and only from those', async () => {
        const store = await open()
        await store.setPresence('r1', 'c1', 'a')
        await store.setPresence('r2', 'c1', 'b')
        await store.setPresence('r3', 'c1', 'c')
        await store.setPresence('r1', 'c2', 'other')
        await store.removePresence('r3', 'c1')
        const removed = await store.removeAllPresence('c1')
        expect(removed.sort(([x], [y]) => x.localeCompare(y))).toEqual([['r1', 'a'], ['r2', 'b']])
        expect(await store.getPresence('r1')).toEqual(new Map([['c2', 'other']]))
        expect(await store.getPresence('r2')).toEqual(new Map())
        expect(await store.removeAllPresence('c1')).toEqual([])
      })

      it('keeps awkward names as ordinary room names and connection ids', async () => {
        const store = await open()
        for (const room of awkwardIds) for (const id of awkwardIds) await store.setPresence(room, id, `${room}/${id}`)
        for (const room of awkwardIds) {
          const entries = await store.getPresence(room)
          expect(sorted([...entries.keys()])).toEqual(sorted(awkwardIds))
          expect(entries.get('__proto__')).toBe(`${room}/__proto__`)
        }
        expect(await store.removeAllPresence('constructor')).toHaveLength(awkwardIds.length)
        for (const room of awkwardIds) expect((await store.getPresence(room)).has('constructor')).toBe(false)
      })
    })

    describe('users', () => {
      it('records the connections of each user, in the order asked', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2', 'c3'])
        await store.addUserConnection('u1', 'c1', true)
        await store.addUserConnection('u2', 'c3', true)
        await store.addUserConnection('u1', 'c2', true)
        const [u2, nobody, u1, again] = await store.getUserConnections(['u2', 'nobody', 'u1', 'u2'])
        expect(u2).toEqual(['c3'])
        expect(nobody).toEqual([])
        expect(sorted(u1!)).toEqual(['c1', 'c2'])
        expect(again).toEqual(['c3'])
        expect(await store.getUserConnections(['nobody'])).toEqual([[]])
        expect(await store.getUserConnections([])).toEqual([])
        // Connections are not users: asking for a connection id as a user finds nothing.
        expect(await store.getUserConnections(['c1'])).toEqual([[]])
      })

      it('counts a connection added twice to a user once', async () => {
        const store = await open()
        await registered(store, ['c1'])
        await store.addUserConnection('u1', 'c1', true)
        await store.addUserConnection('u1', 'c1', true)
        expect(await store.getUserConnections(['u1'])).toEqual([['c1']])
        expect(await store.getOnlineUsers()).toEqual(['u1'])
        // One removal is enough to take the user offline: nothing was counted twice.
        await store.removeConnection('c1')
        expect(await store.getUserConnections(['u1'])).toEqual([[]])
        expect(await store.getOnlineUsers()).toEqual([])
      })

      it('lists online only the users added with trackOnline, yet knows the connections of all', async () => {
        const store = await open()
        expect(await store.getOnlineUsers()).toEqual([])
        await registered(store, ['c1', 'c2', 'c3'])
        await store.addUserConnection('tracked', 'c1', true)
        await store.addUserConnection('untracked', 'c2', false)
        await store.addUserConnection('untracked', 'c3', false)
        expect(await store.getOnlineUsers()).toEqual(['tracked'])
        const [connections] = await store.getUserConnections(['untracked'])
        expect(sorted(connections!)).toEqual(['c2', 'c3'])
        // Untracked still counts as connected: nothing is kept for it.
        expect(await keptIfOffline(store, 'untracked', Uint8Array.from([1]), 10, 60_000)).toBe(false)
        expect(await store.getPendingMessages('untracked', 60_000)).toEqual([])
        await store.removeConnection('c2')
        await store.removeConnection('c3')
        expect(await store.getUserConnections(['untracked'])).toEqual([[]])
        expect(await store.getOnlineUsers()).toEqual(['tracked'])
      })

      it('counts the online users and samples at most the limit of them, all when there are no more', async () => {
        const store = await open()
        expect(await store.sampleOnlineUsers(10)).toEqual({ count: 0, ids: [] })
        const users = ['u1', 'u2', 'u3', 'u4', 'u5']
        await registered(store, [...users.map((user) => `c-${user}`), 'c-hidden'])
        for (const user of users) await store.addUserConnection(user, `c-${user}`, true)
        await store.addUserConnection('hidden', 'c-hidden', false)
        const all = await store.sampleOnlineUsers(10)
        expect(all.count).toBe(5)
        expect(sorted(all.ids)).toEqual(users)
        const some = await store.sampleOnlineUsers(2)
        expect(some.count).toBe(5)
        expect(some.ids).toHaveLength(2)
        expect(new Set(some.ids).size).toBe(2)
        for (const id of some.ids) expect(users).toContain(id)
        expect(await store.sampleOnlineUsers(0)).toEqual({ count: 5, ids: [] })
        await store.removeConnection('c-u1')
        expect((await store.sampleOnlineUsers(10)).count).toBe(4)
      })

      it('takes a removed connection away from its user, who goes offline with the last one', async () => {
        const store = await open()
        await store.addConnection('c1', 'i1')
        await store.addConnection('c2', 'i2')
        await store.addConnection('c3', 'i2')
        await store.addUserConnection('u1', 'c1', true)
        await store.addUserConnection('u1', 'c2', true)
        await store.addUserConnection('u2', 'c3', true)

        await store.removeConnection('c1')
        expect(await store.getUserConnections(['u1', 'u2'])).toEqual([['c2'], ['c3']])
        expect(sorted(await store.getOnlineUsers())).toEqual(['u1', 'u2'])
        expect(await keptIfOffline(store, 'u1', Uint8Array.from([1]), 10, 60_000)).toBe(false)

        await store.removeConnection('c2')
        expect(await store.getUserConnections(['u1', 'u2'])).toEqual([[], ['c3']])
        expect(await store.getOnlineUsers()).toEqual(['u2'])
        expect(await store.getConnectionInstances(['c1', 'c2', 'c3'])).toEqual([undefined, undefined, 'i2'])
        // Offline now: messages are kept for the user.
        expect(await keptIfOffline(store, 'u1', Uint8Array.from([2]), 10, 60_000)).toBe(true)
        expect((await store.getPendingMessages('u1', 60_000)).map(([, message]) => Array.from(message))).toEqual([[2]])

        // Removing again changes nothing; a new connection brings the user back.
        await store.removeConnection('c2')
        expect(await store.getOnlineUsers()).toEqual(['u2'])
        await store.addConnection('c4', 'i1')
        await store.addUserConnection('u1', 'c4', true)
        expect(sorted(await store.getOnlineUsers())).toEqual(['u1', 'u2'])
        expect(await store.getUserConnections(['u1'])).toEqual([['c4']])
      })

      it('changes no user when an anonymous or unknown connection is removed', async () => {
        const store = await open()
        await store.addConnection('anon', 'i1')
        await store.addConnection('c1', 'i1')
        await store.addConnection('c2', 'i2')
        await store.addUserConnection('u1', 'c1', true)
        await store.addUserConnection('quiet', 'c2', false)
        await store.removeConnection('anon')
        await store.removeConnection('nobody')
        expect(await store.getConnectionInstances(['anon', 'c1'])).toEqual([undefined, 'i1'])
        expect(await store.getUserConnections(['u1', 'quiet'])).toEqual([['c1'], ['c2']])
        expect(await store.getOnlineUsers()).toEqual(['u1'])
        expect(await keptIfOffline(store, 'u1', Uint8Array.from([1]), 10, 60_000)).toBe(false)
      })
    })

    describe('pending messages', () => {
      const texts = (pending: ReadonlyArray<[string, Uint8Array]>): string[] => pending.map(([, message]) => new TextDecoder().decode(message))
      const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

      it('keeps nothing for a user who has a connection, and keeps once the last one is gone', async () => {
        const store = await open()
        await registered(store, ['c1'])
        await store.addUserConnection('u1', 'c1', true)
        expect(await keptIfOffline(store, 'u1', encode('lost'), 10, 60_000)).toBe(false)
        expect(await store.getPendingMessages('u1', 60_000)).toEqual([])
        await store.removeConnection('c1')
        expect(await keptIfOffline(store, 'u1', encode('kept'), 10, 60_000)).toBe(true)
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['kept'])
        // A user never seen is offline too.
        expect(await keptIfOffline(store, 'never-seen', encode('x'), 10, 60_000)).toBe(true)
        expect(texts(await store.getPendingMessages('never-seen', 60_000))).toEqual(['x'])
        expect(await store.getPendingMessages('nobody', 60_000)).toEqual([])
      })

      it('answers with the user\'s connections at the moment it keeps, or instead of keeping', async () => {
        const store = await open()
        await registered(store, ['c1', 'c2'])
        await store.addUserConnection('u1', 'c1', true)
        await store.addUserConnection('u1', 'c2', true)
        const skipped = await store.keepUserMessage('u1', encode('live only'), true, 10, 60_000)
        expect({ ...skipped, connections: sorted(skipped.connections) }).toEqual({ id: undefined, connections: ['c1', 'c2'], dropped: 0 })
        // Kept whatever the connections (acknowledged mode), ids increasing in order of keeping.
        const first = await store.keepUserMessage('u1', encode('a'), false, 10, 60_000)
        const second = await store.keepUserMessage('u1', encode('b'), false, 10, 60_000)
        expect(sorted(first.connections)).toEqual(['c1', 'c2'])
        const pending = await store.getPendingMessages('u1', 60_000)
        expect(texts(pending)).toEqual(['a', 'b'])
        expect(pending.map(([id]) => id)).toEqual([first.id, second.id])
        await store.removeConnection('c1')
        await store.removeConnection('c2')
        expect(await store.keepUserMessage('u1', encode('c'), false, 10, 60_000)).toMatchObject({ connections: [], dropped: 0 })
      })

      it('counts the older messages a keep drops for maxMessages', async () => {
        const store = await open()
        for (let n = 1; n <= 3; n++) expect((await store.keepUserMessage('u1', encode(`m${n}`), true, 3, 60_000)).dropped).toBe(0)
        expect((await store.keepUserMessage('u1', encode('m4'), true, 3, 60_000)).dropped).toBe(1)
        expect((await store.keepUserMessage('u1', encode('m5'), false, 1, 60_000)).dropped).toBe(3)
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m5'])
      })

      it('returns kept messages oldest first, byte for byte, with distinct ids', async () => {
        const store = await open()
        // A view into a larger buffer, surrounded by bytes that must not leak in.
        const backing = new Uint8Array(32).fill(0xee)
        backing.set([0x3a, 0x00, 0xff, 0x3a], 7)
        const messages = [
          Uint8Array.from([0x00]),
          Uint8Array.from([0x3a, 0x00, 0x3a]),
          Uint8Array.from({ length: 256 }, (_, index) => index),
          new Uint8Array(backing.buffer, 7, 4),
          Uint8Array.from([0xff, 0xfe, 0xc3, 0x28]),
          Buffer.from('m:1\u0000ünï'),
          new Uint8Array(0),
        ]
        const expected = messages.map((message) => Array.from(message))
        for (const message of messages) expect(await keptIfOffline(store, 'u1', message, 100, 60_000)).toBe(true)
        const pending = await store.getPendingMessages('u1', 60_000)
        for (const [id, message] of pending) {
          expect(typeof id).toBe('string')
          expect(id.length).toBeGreaterThan(0)
          expect(message).toBeInstanceOf(Uint8Array)
        }
        expect(pending.map(([, message]) => Array.from(message))).toEqual(expected)
        expect(new Set(pending.map(([id]) => id)).size).toBe(messages.length)
        // Reading does not consume.
        expect(await store.getPendingMessages('u1', 60_000)).toEqual(pending)
      })

      it('keeps only the newest maxMessages, under their original ids', async () => {
        const store = await open()
        for (let n = 1; n <= 5; n++) await keptIfOffline(store, 'u1', encode(`m${n}`), 3, 60_000)
        const first = await store.getPendingMessages('u1', 60_000)
        expect(texts(first)).toEqual(['m3', 'm4', 'm5'])
        await keptIfOffline(store, 'u1', encode('m6'), 3, 60_000)
        const second = await store.getPendingMessages('u1', 60_000)
        expect(texts(second)).toEqual(['m4', 'm5', 'm6'])
        expect(second.slice(0, 2).map(([id]) => id)).toEqual(first.slice(1).map(([id]) => id))
        await keptIfOffline(store, 'u1', encode('m7'), 1, 60_000)
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m7'])
      })

      it('deletes exactly the given ids, ignoring unknown ones and an empty list', async () => {
        const store = await open()
        for (let n = 1; n <= 5; n++) await keptIfOffline(store, 'u1', encode(`m${n}`), 100, 60_000)
        const pending = await store.getPendingMessages('u1', 60_000)
        const ids = pending.map(([id]) => id)
        await store.deletePendingMessages('u1', [])
        expect(await store.getPendingMessages('u1', 60_000)).toEqual(pending)
        await store.deletePendingMessages('u1', [ids[3]!, ids[1]!])
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m1', 'm3', 'm5'])
        // Ids already deleted, or that never were, change nothing.
        await store.deletePendingMessages('u1', [ids[1]!, '1-0', ids[3]!])
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m1', 'm3', 'm5'])
        await store.deletePendingMessages('nobody', [ids[0]!])
        await store.deletePendingMessages('nobody', [])
        expect((await store.getPendingMessages('u1', 60_000)).map(([id]) => id)).toEqual([ids[0], ids[2], ids[4]])
        await store.deletePendingMessages('u1', [ids[0]!, ids[2]!, ids[4]!])
        expect(await store.getPendingMessages('u1', 60_000)).toEqual([])
        // Still usable afterwards.
        expect(await keptIfOffline(store, 'u1', encode('m6'), 100, 60_000)).toBe(true)
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m6'])
      })

      it('ignores ids it never gave out, and still deletes the real ones asked with them', async () => {
        // Ids come back from clients (mesh/ack): any string may arrive.
        const store = await open()
        await keptIfOffline(store, 'u1', encode('m1'), 100, 60_000)
        await keptIfOffline(store, 'u1', encode('m2'), 100, 60_000)
        const [[firstId]] = (await store.getPendingMessages('u1', 60_000)) as [[string, Uint8Array]]
        await store.deletePendingMessages('u1', ['nope', '', 'x:y', '-', '+'])
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m1', 'm2'])
        await store.deletePendingMessages('u1', [firstId, 'nope'])
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m2'])
      })

      it('does not return a message older than maxAge', async () => {
        const store = await open()
        await keptIfOffline(store, 'u1', encode('short-lived'), 100, 300)
        expect(texts(await store.getPendingMessages('u1', 300))).toEqual(['short-lived'])
        await eventually(async () => expect(await store.getPendingMessages('u1', 300)).toEqual([]), 3_000)
      })

      it('drops an old message even while newer ones keep arriving', async () => {
        const store = await open()
        const maxAge = 400
        await keptIfOffline(store, 'u1', encode('old'), 100, maxAge)
        const oldQueuedBy = Date.now()
        // Time passing is the event here: 'new' must be at least half maxAge younger than 'old'.
        await until(async () => Date.now() - oldQueuedBy, (age) => age >= maxAge / 2)
        await keptIfOffline(store, 'u1', encode('new'), 100, maxAge)
        expect(texts(await store.getPendingMessages('u1', maxAge))).toEqual(['old', 'new'])
        // Read until 'old' is gone or certainly older than maxAge ('age' is taken before the read).
        const last = await until(
          async () => ({ age: Date.now() - oldQueuedBy, kept: texts(await store.getPendingMessages('u1', maxAge)) }),
          ({ age, kept }) => age > maxAge || !kept.includes('old'),
        )
        // 'new' is at most about maxAge / 2 old here: it must still be there, alone.
        expect(last.kept).toEqual(['new'])
      })

      it('applies the maxAge it is given when reading', async () => {
        const store = await open()
        await keptIfOffline(store, 'u1', encode('m1'), 100, 60_000)
        const queuedBy = Date.now()
        const last = await until(
          async () => ({ age: Date.now() - queuedBy, kept: texts(await store.getPendingMessages('u1', 100)) }),
          ({ age, kept }) => age > 100 || kept.length === 0,
        )
        expect(last.kept).toEqual([])
        // Kept all the same: a reader with a longer maxAge still gets it.
        expect(texts(await store.getPendingMessages('u1', 60_000))).toEqual(['m1'])
      })

      it('keeps users apart: their connections, queues and deletions', async () => {
        const store = await open()
        await registered(store, ['c1'])
        await store.addUserConnection('u', 'c1', true)
        // 'u' being connected does not make 'u:x' or 'u2' connected.
        expect(await keptIfOffline(store, 'u:x', encode('for u:x'), 100, 60_000)).toBe(true)
        expect(await keptIfOffline(store, 'u2', encode('for u2'), 100, 60_000)).toBe(true)
        expect(await keptIfOffline(store, 'u', encode('for u'), 100, 60_000)).toBe(false)
        expect(await keptIfOffline(store, 'u2', encode('for u2 again'), 100, 60_000)).toBe(true)
        expect(await store.getPendingMessages('u', 60_000)).toEqual([])
        expect(texts(await store.getPendingMessages('u:x', 60_000))).toEqual(['for u:x'])
        expect(texts(await store.getPendingMessages('u2', 60_000))).toEqual(['for u2', 'for u2 again'])
        // maxMessages counts per user.
        await keptIfOffline(store, 'u:x', encode('trim'), 1, 60_000)
        expect(texts(await store.getPendingMessages('u:x', 60_000))).toEqual(['trim'])
        expect(texts(await store.getPendingMessages('u2', 60_000))).toEqual(['for u2', 'for u2 again'])
        // Deleting one user's messages leaves another's alone.
        const [[u2First]] = (await store.getPendingMessages('u2', 60_000)) as [[string, Uint8Array]]
        await store.deletePendingMessages('u:x', (await store.getPendingMessages('u:x', 60_000)).map(([id]) => id))
        expect(await store.getPendingMessages('u:x', 60_000)).toEqual([])
        expect(texts(await store.getPendingMessages('u2', 60_000))).toEqual(['for u2', 'for u2 again'])
        await store.deletePendingMessages('u2', [u2First])
        expect(texts(await store.getPendingMessages('u2', 60_000))).toEqual(['for u2 again'])
        expect(await store.getUserConnections(['u', 'u:x', 'u2'])).toEqual([['c1'], [], []])
      })

      it('keeps awkward names as ordinary user ids', async () => {
        const store = await open()
        await registered(store, awkwardIds.map((_, index) => `c${index}`))
        for (const [index, id] of awkwardIds.entries()) await store.addUserConnection(id, `c${index}`, true)
        expect(await store.getUserConnections(awkwardIds)).toEqual(awkwardIds.map((_, index) => [`c${index}`]))
        expect(sorted(await store.getOnlineUsers())).toEqual(sorted(awkwardIds))
        expect(await store.getUserConnections(['valueOf', 'a', 'b', 'x', '__proto__x'])).toEqual([[], [], [], [], []])
        for (const id of awkwardIds) expect(await keptIfOffline(store, id, encode(id), 100, 60_000)).toBe(false)
        expect(await keptIfOffline(store, 'valueOf', encode('valueOf'), 100, 60_000)).toBe(true)

        for (const [index] of awkwardIds.entries()) await store.removeConnection(`c${index}`)
        expect(await store.getOnlineUsers()).toEqual([])
        expect(await store.getUserConnections(awkwardIds)).toEqual(awkwardIds.map(() => []))
        for (const id of awkwardIds) expect(await keptIfOffline(store, id, encode(`for ${id}`), 100, 60_000)).toBe(true)
        for (const id of awkwardIds) expect(texts(await store.getPendingMessages(id, 60_000))).toEqual([`for ${id}`])
        expect(texts(await store.getPendingMessages('valueOf', 60_000))).toEqual(['valueOf'])
        const [[protoId]] = (await store.getPendingMessages('__proto__', 60_000)) as [[string, Uint8Array]]
        await store.deletePendingMessages('__proto__', [protoId])
        expect(await store.getPendingMessages('__proto__', 60_000)).toEqual([])
        expect(texts(await store.getPendingMessages('a:b', 60_000))).toEqual(['for a:b'])
        expect(texts(await store.getPendingMessages('with space', 60_000))).toEqual(['for with space'])
      })

      it('keeps users and kept messages of different namespaces apart', async () => {
        const suffix = randomUUID()
        const a = await open(`contract-users-a-${suffix}`)
        const b = await open(`contract-users-b-${suffix}`)
        await a.addConnection('c1', 'i1')
        await a.addUserConnection('u1', 'c1', true)
        await keptIfOffline(a, 'u2', encode('in a'), 100, 60_000)
        expect(await b.getUserConnections(['u1'])).toEqual([[]])
        expect(await b.getOnlineUsers()).toEqual([])
        expect(await b.getPendingMessages('u2', 60_000)).toEqual([])
        // u1 is connected in a only.
        expect(await keptIfOffline(b, 'u1', encode('in b'), 100, 60_000)).toBe(true)
        await b.addConnection('c1', 'i1')
        await b.addUserConnection('u1', 'c1', true)
        await b.removeConnection('c1')
        expect(await a.getUserConnections(['u1'])).toEqual([['c1']])
        expect(await a.getOnlineUsers()).toEqual(['u1'])
        expect(await a.getPendingMessages('u1', 60_000)).toEqual([])
        expect(texts(await a.getPendingMessages('u2', 60_000))).toEqual(['in a'])
      })
    })

    describe('writes racing a removal', () => {
      // A store may split a write over several entities into steps (a cluster keeps a
      // room's keys and a connection's keys on different nodes). Each test starts the
      // second operation after 0, 1, 2... round trips of the first, so its steps land
      // between each pair of the first one's steps; whatever the order, nothing may be
      // left without an owner, and a refused write must leave nothing behind.
      const offsets = [0, 1, 2, 3, 4, 5]

      /** Runs `first`, starts `second` after `delay` store round trips, and resolves with both results. */
      async function raced<A, B>(store: MeshStore, delay: number, first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> {
        const a = first()
        for (let n = 0; n < delay; n++) await store.isInRoom('race-clock', 'nobody')
        const b = second()
        return [await a, await b]
      }

      it('leaves no room member without an owner when a join races the removal of its connection', async () => {
        const store = await open()
        await registered(store, ['witness'])
        await store.addToRoom('r', 'witness')
        for (const delay of offsets) {
          for (const joinFirst of [true, false]) {
            const id = `c${delay}${joinFirst ? 'j' : 'r'}`
            await store.addConnection(id, 'i1')
            const join = (): Promise<boolean> => store.addToRoom('r', id)
            const remove = (): Promise<void> => store.removeConnection(id)
            const [joined] = joinFirst ? await raced(store, delay, join, remove) : (await raced(store, delay, remove, join)).reverse()
            expect(typeof joined).toBe('boolean')
            expect(await store.isInRoom('r', id), `${id} still a member`).toBe(false)
            expect(await store.getConnectionRooms(id)).toEqual([])
          }
        }
        expect(await store.getRoomMembers('r')).toEqual(['witness'])
        expect(await store.getConnectionRooms('witness')).toEqual(['r'])
      })

      it('leaves no user connection and no online user when an authentication races the removal of its connection', async () => {
        const store = await open()
        for (const delay of offsets) {
          for (const authenticateFirst of [true, false]) {
            const id = `c${delay}${authenticateFirst ? 'a' : 'r'}`
            const user = `u-${id}`
            await store.addConnection(id, 'i1')
            const authenticate = (): Promise<boolean> => store.addUserConnection(user, id, true)
            const remove = (): Promise<void> => store.removeConnection(id)
            if (authenticateFirst) await raced(store, delay, authenticate, remove)
            else await raced(store, delay, remove, authenticate)
            expect(await store.getUserConnections([user]), `${user}'s connections`).toEqual([[]])
            expect(await store.getOnlineUsers()).not.toContain(user)
            expect(await keptIfOffline(store, user, Uint8Array.from([1]), 10, 60_000)).toBe(true)
          }
        }
      })

      it('keeps a user online when its new connection races the removal of its last one', async () => {
        const store = await open()
        for (const delay of offsets) {
          for (const removeFirst of [true, false]) {
            const user = `u${delay}${removeFirst ? 'r' : 'a'}`
            const [last, next] = [`${user}-last`, `${user}-next`]
            await registered(store, [last, next])
            expect(await store.addUserConnection(user, last, true)).toBe(true)
            const remove = (): Promise<void> => store.removeConnection(last)
            const authenticate = (): Promise<boolean> => store.addUserConnection(user, next, true)
            if (removeFirst) await raced(store, delay, remove, authenticate)
            else await raced(store, delay, authenticate, remove)
            expect(await store.getUserConnections([user])).toEqual([[next]])
            expect(await store.getOnlineUsers(), `${user} online`).toContain(user)
          }
        }
      })

      it('leaves no metadata when a metadata write races the removal of its connection', async () => {
        const store = await open()
        for (const delay of offsets) {
          const id = `c${delay}`
          await store.addConnection(id, 'i1')
          await raced(store, delay, () => store.setMetadata(id, 'late'), () => store.removeConnection(id))
          expect(await store.getMetadata([id])).toEqual([undefined])
        }
        expect(await store.getAllMetadata()).toEqual(new Map())
      })

      it('leaves no room member without an owner when a join races a leave of every room', async () => {
        const store = await open()
        for (const delay of offsets) {
          const id = `c${delay}`
          await store.addConnection(id, 'i1')
          const [joined, left] = await raced(store, delay, () => store.addToRoom('r', id), () => store.removeFromAllRooms(id))
          expect(joined).toBe(true)
          // Either the leave saw the join (and undid it) or the join landed after it: the two sides agree.
          const member = await store.isInRoom('r', id)
          expect(await store.getConnectionRooms(id)).toEqual(member ? ['r'] : [])
          if (member) expect(left).toEqual([])
        }
      })
    })

    describe('isolation', () => {
      it('keeps stores of different namespaces apart', async () => {
        const suffix = randomUUID()
        const a = await open(`contract-a-${suffix}`)
        const b = await open(`contract-b-${suffix}`)

        await a.registerInstance('i1', 50)
        await a.addConnection('c1', 'i1')
        await a.setMetadata('c1', 'from a')
        await a.addToRoom('r1', 'c1')
        expect(await a.claimCleanup('i1', 60_000)).toBe(true)
        await until(() => a.getDeadInstances(), (dead) => dead.includes('i1'))

        expect(await b.getDeadInstances()).toEqual([])
        expect(await b.refreshInstance('i1', 60_000)).toBe(false)
        expect(await b.claimCleanup('i1', 60_000)).toBe(true)
        expect(await b.getConnectionInstances(['c1'])).toEqual([undefined])
        expect(await b.getInstanceConnections('i1')).toEqual([])
        expect(await b.getMetadata(['c1'])).toEqual([undefined])
        expect(await b.getAllMetadata()).toEqual(new Map())
        expect(await b.isInRoom('r1', 'c1')).toBe(false)
        expect(await b.getRoomMembers('r1')).toEqual([])
        expect(await b.getConnectionRooms('c1')).toEqual([])

        // Writes and removals in b leave a alone.
        await b.addConnection('c1', 'i2')
        await b.setMetadata('c1', 'from b')
        await b.addToRoom('r2', 'c1')
        await b.removeConnection('c1')
        await b.unregisterInstance('i1')
        expect(await a.getDeadInstances()).toEqual(['i1'])
        expect(await a.getConnectionInstances(['c1'])).toEqual(['i1'])
        expect(await a.getInstanceConnections('i1')).toEqual(['c1'])
        expect(await a.getAllMetadata()).toEqual(new Map([['c1', 'from a']]))
        expect(await a.getConnectionRooms('c1')).toEqual(['r1'])
        expect(await a.getRoomMembers('r1')).toEqual(['c1'])
      })
    })

    describe('channels', () => {
      const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
      /** Offsets and messages of a snapshot's entries, in the order returned. */
      function decoded(entries: readonly Uint8Array[]): Array<[number, number[]]> {
        return entries.map((entry) => {
          expect(entry).toBeInstanceOf(Uint8Array)
          const parsed = decodeChannelEntry(entry)
          expect(parsed, 'an entry that does not decode').toBeDefined()
          return [parsed!.offset, Array.from(parsed!.message)]
        })
      }
      const text = (entries: readonly Uint8Array[]): string[] => decoded(entries).map(([, message]) => new TextDecoder().decode(Uint8Array.from(message)))

      it('reads an unknown channel as empty, at offset 0', async () => {
        const store = await open()
        for (const limit of [-1, 0, 10]) expect(await store.readChannel('never', limit)).toEqual({ offset: 0, base: 0, entries: [] })
      })

      it('gives offsets that count up by one per channel, above the base, as safe integers', async () => {
        const store = await open()
        const a: number[] = []
        const b: number[] = []
        for (let n = 0; n < 4; n++) {
          a.push(await store.writeChannel('a', bytes(`a${n}`), 10))
          if (n % 2 === 0) b.push(await store.writeChannel('b', bytes(`b${n}`), 10))
        }
        for (const offsets of [a, b]) {
          for (const offset of offsets) expect(Number.isSafeInteger(offset) && offset > 0).toBe(true)
          expect(offsets.map((offset) => offset - offsets[0]!)).toEqual(offsets.map((_, index) => index))
        }
        const snapshot = await store.readChannel('a', -1)
        expect(snapshot.offset).toBe(a[3])
        expect(Number.isSafeInteger(snapshot.base)).toBe(true)
        expect(snapshot.base).toBeLessThan(a[0]!)
        // The first message has base + 1, so offset - base counts every message ever written.
        expect(snapshot.offset - snapshot.base).toBe(4)
        expect(decoded(snapshot.entries).map(([offset]) => offset)).toEqual([...a].reverse())
        expect((await store.readChannel('b', -1)).offset).toBe(b[1])
      })

      it('reads the latest offsets of several channels at once, 0 for unknown ones, in the order asked', async () => {
        const store = await open()
        expect(await store.getChannelOffsets([])).toEqual([])
        const a = await store.writeChannel('a', bytes('a0'), 0)
        await store.writeChannel('b', bytes('b0'), 5)
        const b = await store.writeChannel('b', bytes('b1'), 5)
        expect(await store.getChannelOffsets(['b', 'never', 'a'])).toEqual([b, 0, a])
        expect(await store.getChannelOffsets(['a'])).toEqual([(await store.readChannel('a', 0)).offset])
      })

      it('reads newest first, up to the limit; a negative limit reads all retained, 0 none', async () => {
        const store = await open()
        const offsets: number[] = []
        for (const n of [1, 2, 3, 4, 5]) offsets.push(await store.writeChannel('c', bytes(`m${n}`), 10))
        const three = await store.readChannel('c', 3)
        expect(text(three.entries)).toEqual(['m5', 'm4', 'm3'])
        expect(decoded(three.entries).map(([offset]) => offset)).toEqual([offsets[4], offsets[3], offsets[2]])
        expect(three.offset).toBe(offsets[4])
        expect(text((await store.readChannel('c', -1)).entries)).toEqual(['m5', 'm4', 'm3', 'm2', 'm1'])
        expect(text((await store.readChannel('c', 50)).entries)).toEqual(['m5', 'm4', 'm3', 'm2', 'm1'])
        const none = await store.readChannel('c', 0)
        expect(none).toEqual({ offset: offsets[4], base: three.base, entries: [] })
      })

      it('keeps exactly the newest historyLimit messages; 0 clears the history but not the offsets', async () => {
        const store = await open()
        for (const n of [1, 2, 3, 4, 5]) await store.writeChannel('r', bytes(`m${n}`), 3)
        expect(text((await store.readChannel('r', -1)).entries)).toEqual(['m5', 'm4', 'm3'])
        await store.writeChannel('r', bytes('m6'), 2)
        expect(text((await store.readChannel('r', 10)).entries)).toEqual(['m6', 'm5'])
        const cleared = await store.writeChannel('r', bytes('m7'), 0)
        expect(await store.readChannel('r', -1)).toEqual({ offset: cleared, base: cleared - 7, entries: [] })
        const next = await store.writeChannel('r', bytes('m8'), 5)
        expect(next).toBe(cleared + 1)
        expect(decoded((await store.readChannel('r', -1)).entries)).toEqual([[next, Array.from(bytes('m8'))]])
      })

      it('keeps channels apart, including names that extend one another', async () => {
        const store = await open()
        const names = ['x', 'x:y', 'x y', '__proto__', 'ünï']
        for (const [index, name] of names.entries()) await store.writeChannel(name, bytes(`${index}`), index === 2 ? 0 : 10)
        await store.writeChannel('x', bytes('again'), 10)
        for (const [index, name] of names.entries()) {
          const snapshot = await store.readChannel(name, -1)
          expect(text(snapshot.entries)).toEqual(name === 'x' ? ['again', '0'] : index === 2 ? [] : [`${index}`])
          expect(snapshot.offset - snapshot.base).toBe(name === 'x' ? 2 : 1)
        }
        expect(await store.readChannel('x:', -1)).toEqual({ offset: 0, base: 0, entries: [] })
      })

      it('reads only the entries after an offset, newest first, capped by the limit', async () => {
        const store = await open()
        const offsets: number[] = []
        for (let n = 1; n <= 12; n++) offsets.push(await store.writeChannel('s', bytes(`m${n}`), 10)) // m3..m12 kept
        const after = async (since: number, limit: number): Promise<string[]> => text((await store.readChannel('s', limit, { after: since })).entries)
        expect(await after(offsets[8]!, 100)).toEqual(['m12', 'm11', 'm10'])
        expect(await after(offsets[8]!, 2)).toEqual(['m12', 'm11'])
        expect(await after(offsets[11]!, 100)).toEqual([])
        expect(await after(offsets[11]! + 5, 100)).toEqual([]) // ahead of the channel
        expect(await after(offsets[0]!, 100)).toEqual(['m12', 'm11', 'm10', 'm9', 'm8', 'm7', 'm6', 'm5', 'm4', 'm3']) // m2 is gone
        expect(await after(offsets[0]!, 4)).toEqual(['m12', 'm11', 'm10', 'm9'])
        // 0 and offsets below the base read from the channel's first message.
        expect(await after(0, 3)).toEqual(['m12', 'm11', 'm10'])
        expect(await after(1, 100)).toHaveLength(10)
        expect(await after(offsets[8]!, -1)).toEqual(['m12', 'm11', 'm10'])
        expect(await after(offsets[8]!, Infinity)).toEqual(['m12', 'm11', 'm10'])
        const snapshot = await store.readChannel('s', 100, { after: offsets[10]! })
        expect({ offset: snapshot.offset, entries: decoded(snapshot.entries).map(([offset]) => offset) }).toEqual({ offset: offsets[11], entries: [offsets[11]] })
        expect(snapshot.offset - snapshot.base).toBe(12)
        expect(await store.readChannel('never', 10, { after: 5 })).toEqual({ offset: 0, base: 0, entries: [] })
      })

      it('reads after an offset by position, whatever the history holds before it', async () => {
        const store = await open()
        await store.writeChannel('p', bytes('old'), 0) // cleared history, offsets go on
        const kept: number[] = []
        for (let n = 1; n <= 300; n++) kept.push(await store.writeChannel('p', bytes(`m${n}`), 1_000))
        const tail = await store.readChannel('p', 1_000, { after: kept[296]! })
        expect(text(tail.entries)).toEqual(['m300', 'm299', 'm298'])
        // More than one chunk of a chunked read, and the exact start of history.
        const all = await store.readChannel('p', 1_000, { after: kept[0]! - 1 })
        expect(decoded(all.entries).map(([offset]) => offset)).toEqual([...kept].reverse())
      })

      it('keeps a read within a byte budget: the newest messages that fit, stopping at the first that does not', async () => {
        const store = await open()
        const sizes = [10, 30, 20, 5, 40] // oldest to newest
        const offsets: number[] = []
        for (const [index, size] of sizes.entries()) offsets.push(await store.writeChannel('b', new Uint8Array(size).fill(0x61 + index), 10))
        const lengths = async (limit: number, range: { after?: number; maxBytes?: number }): Promise<number[]> =>
          decoded((await store.readChannel('b', limit, range)).entries).map(([, message]) => message.length)
        expect(await lengths(10, { maxBytes: 65 })).toEqual([40, 5, 20]) // the offset prefixes do not count
        expect(await lengths(10, { maxBytes: 64 })).toEqual([40, 5])
        expect(await lengths(10, { maxBytes: 45 })).toEqual([40, 5])
        expect(await lengths(10, { maxBytes: 39 })).toEqual([]) // the newest alone is too big: nothing, not an older one
        expect(await lengths(-1, { maxBytes: 1_000 })).toEqual([40, 5, 20, 30, 10])
        expect(await lengths(10, { after: offsets[1]!, maxBytes: 60 })).toEqual([40, 5])
        expect(await lengths(2, { after: offsets[0]!, maxBytes: 1_000 })).toEqual([40, 5])
        const empty = await store.writeChannel('b', new Uint8Array(0), 10)
        expect(decoded((await store.readChannel('b', 10, { maxBytes: 0 })).entries)).toEqual([[empty, []]])
      })

      it('keeps every byte of a message, colons and all', async () => {
        const store = await open()
        const messages = [
          Uint8Array.from([0x3a]),
          Uint8Array.from([0x31, 0x3a, 0x32, 0x3a, 0x00, 0xff, 0x3a]),
          new Uint8Array(0),
          Uint8Array.from({ length: 256 }, (_, index) => index),
          new Uint8Array(new Uint8Array(32).fill(0x3a).buffer, 5, 10), // a view into a larger buffer
        ]
        const offsets: number[] = []
        for (const message of messages) offsets.push(await store.writeChannel('bin', message, 10))
        const expected = messages.map((message, index) => [offsets[index], Array.from(message)]).reverse()
        expect(decoded((await store.readChannel('bin', -1)).entries)).toEqual(expected)
      })

      it('gives concurrent writes to a channel consecutive offsets in call order, across batches, and keeps the newest N', async () => {
        const store = await open()
        // More than one batch holds (256 messages), interleaved over three channels.
        const channels = ['burst', 'burst:2', 'other']
        const writes = Array.from({ length: 600 }, (_, n) => [channels[n % 3]!, `m${n}`] as const)
        const offsets = await Promise.all(writes.map(([channel, message]) => store.writeChannel(channel, bytes(message), 100)))
        for (const channel of channels) {
          const mine = writes.map(([name], index) => [name, index] as const).filter(([name]) => name === channel).map(([, index]) => index)
          const got = mine.map((index) => offsets[index]!)
          expect(got.map((offset) => offset - got[0]!)).toEqual(got.map((_, index) => index))
          const snapshot = await store.readChannel(channel, -1)
          expect(snapshot.offset).toBe(got.at(-1))
          const newest = mine.slice(-100).reverse()
          expect(decoded(snapshot.entries).map(([offset]) => offset)).toEqual(newest.map((index) => offsets[index]))
          expect(text(snapshot.entries)).toEqual(newest.map((index) => writes[index]![1]))
        }
      })

      it('applies each concurrent write its own history limit, in order', async () => {
        const store = await open()
        const limits = [5, 5, 5, 0, 3, 3, 8, 8, 8, 8, 2, 6, 6, 6, 6, 6, 6, 6, 6, 4]
        const offsets = await Promise.all(limits.map((limit, n) => store.writeChannel('mixed', bytes(`m${n}`), limit)))
        expect(offsets.map((offset) => offset - offsets[0]!)).toEqual(offsets.map((_, index) => index))
        // What writing them one at a time keeps: push each, then keep its limit's newest.
        let expected: string[] = []
        limits.forEach((limit, n) => {
          expected = limit > 0 ? [`m${n}`, ...expected].slice(0, limit) : []
        })
        expect(text((await store.readChannel('mixed', -1)).entries)).toEqual(expected)
      })

      it('orders writers that each await their write before the next, as their calls came', async () => {
        const store = await open()
        const order: string[] = []
        const offsets = new Map<string, number>()
        await Promise.all(
          Array.from({ length: 10 }, async (_, writer) => {
            for (let n = 0; n < 20; n++) {
              const message = `w${writer}-${n}`
              const written = store.writeChannel('loop', bytes(message), 100)
              order.push(message)
              offsets.set(message, await written)
            }
          }),
        )
        const first = offsets.get(order[0]!)!
        expect(order.map((message) => offsets.get(message)! - first)).toEqual(order.map((_, index) => index))
        expect(text((await store.readChannel('loop', -1)).entries)).toEqual(order.slice(-100).reverse())
      })

      it('keeps channels of different namespaces apart', async () => {
        const suffix = randomUUID()
        const a = await open(`contract-a-${suffix}`)
        const b = await open(`contract-b-${suffix}`)
        await a.writeChannel('c', bytes('from a'), 10)
        expect(await b.readChannel('c', -1)).toEqual({ offset: 0, base: 0, entries: [] })
        const first = await b.writeChannel('c', bytes('from b'), 10)
        expect(text((await b.readChannel('c', -1)).entries)).toEqual(['from b'])
        expect(text((await a.readChannel('c', -1)).entries)).toEqual(['from a'])
        expect((await b.readChannel('c', 0)).offset).toBe(first)
      })
    })

    describe('lifecycle', () => {
      it('accepts reconnect listeners and closes', async () => {
        const store = await create()
        let closed = false
        onTestFinished(() => (closed ? undefined : store.close()))
        let called = 0
        store.onReconnect(() => called++)
        await store.addConnection('c1', 'i1')
        closed = true
        await expect(store.close()).resolves.toBeUndefined()
        // Closing on purpose is not a reconnection.
        expect(called).toBe(0)
      })
    })
  })
}

/** Records what a bus handler receives. */
function recorder(): { handler: BusHandler; messages: Uint8Array[]; bytes(): number[][] } {
  const messages: Uint8Array[] = []
  return {
    messages,
    handler: (message) => messages.push(message),
    bytes: () => messages.map((message) => Array.from(message)),
  }
}

/** The behaviour every MeshBus must share. */
export function describeBusContract(name: string, create: CreateBus): void {
  describe(`${name} bus contract`, () => {
    async function open(): Promise<{ bus: MeshBus; topic: (name: string) => string }> {
      const bus = await create()
      onTestFinished(() => bus.close())
      // Unique topics per test: a networked bus may be shared with other tests.
      const prefix = `bus-contract-${randomUUID()}`
      return { bus, topic: (topicName) => `${prefix}:${topicName}` }
    }

    it('delivers each message once to every subscriber of its topic, in publish order', async () => {
      const { bus, topic } = await open()
      const t = topic('t')
      const a = recorder()
      const b = recorder()
      await bus.subscribe(t, a.handler)
      await bus.subscribe(t, b.handler)
      for (const n of [1, 2, 3]) await bus.publish(t, new Uint8Array([n]))
      // Published without waiting for one another: order must still hold.
      await Promise.all(Array.from({ length: 60 }, (_, index) => bus.publish(t, new Uint8Array([index + 4]))))
      await bus.publish(t, new Uint8Array([255]))
      await waitFor(() => a.messages.length >= 64 && b.messages.length >= 64)
      const expected = [...Array.from({ length: 63 }, (_, index) => [index + 1]), [255]]
      expect(a.bytes()).toEqual(expected)
      expect(b.bytes()).toEqual(expected)
    })

    it('keeps one publisher order across topics', async () => {
      const { bus, topic } = await open()
      const log: string[] = []
      const names = ['x', 'y', 'z']
      for (const topicName of names) await bus.subscribe(topic(topicName), (message) => log.push(`${topicName}${message[0]}`))
      const published: string[] = []
      const sends: Array<Promise<void>> = []
      for (let n = 0; n < 30; n++) {
        const topicName = names[n % 3]!
        published.push(`${topicName}${n}`)
        sends.push(bus.publish(topic(topicName), new Uint8Array([n])))
      }
      await Promise.all(sends)
      await waitFor(() => log.length >= published.length)
      expect(log).toEqual(published)
    })

    it('keeps topics apart, including names with ":", spaces and glob characters', async () => {
      const { bus, topic } = await open()
      const names = ['a', 'a:b', 'a b', '*', 'a*', '__proto__', 'constructor']
      const recorders = new Map(names.map((topicName) => [topicName, recorder()]))
      for (const [topicName, { handler }] of recorders) await bus.subscribe(topic(topicName), handler)
      for (const [index, topicName] of names.entries()) await bus.publish(topic(topicName), new Uint8Array([index]))
      await bus.publish(topic('nobody listens'), new Uint8Array([99]))
      // Every topic gets a closing marker; order means nothing else can follow it.
      for (const topicName of names) await bus.publish(topic(topicName), new Uint8Array([200]))
      await waitFor(() => [...recorders.values()].every((r) => r.messages.length >= 2))
      for (const [index, topicName] of names.entries()) expect(recorders.get(topicName)!.bytes()).toEqual([[index], [200]])
    })

    it('delivers to a second handler on a topic only what is published after it subscribed', async () => {
      const { bus, topic } = await open()
      const t = topic('t')
      const a = recorder()
      const b = recorder()
      await bus.subscribe(t, a.handler)
      await bus.publish(t, new Uint8Array([1]))
      await waitFor(() => a.messages.length === 1)
      await bus.subscribe(t, b.handler)
      await bus.publish(t, new Uint8Array([2]))
      await bus.publish(t, new Uint8Array([3]))
      await waitFor(() => a.messages.length >= 3 && b.messages.length >= 2)
      expect(a.bytes()).toEqual([[1], [2], [3]])
      expect(b.bytes()).toEqual([[2], [3]])
    })

    it('stops delivering to an unsubscribed handler while others on the topic still receive', async () => {
      const { bus, topic } = await open()
      const t = topic('t')
      const a = recorder()
      const b = recorder()
      await bus.subscribe(t, a.handler)
      await bus.subscribe(t, b.handler)
      await bus.publish(t, new Uint8Array([1]))
      await waitFor(() => a.messages.length === 1 && b.messages.length === 1)
      await bus.unsubscribe(t, a.handler)
      await bus.publish(t, new Uint8Array([2]))
      await waitFor(() => b.messages.length >= 2)
      expect(a.bytes()).toEqual([[1]])
      expect(b.bytes()).toEqual([[1], [2]])
    })

    it('stops delivering once the last handler of a topic unsubscribes, and delivers again after subscribing anew', async () => {
      const { bus, topic } = await open()
      const t = topic('t')
      const mine = recorder()
      const marker = recorder()
      await bus.subscribe(t, mine.handler)
      await bus.subscribe(topic('marker'), marker.handler)
      await bus.publish(t, new Uint8Array([1]))
      await waitFor(() => mine.messages.length === 1)
      await bus.unsubscribe(t, mine.handler)
      await bus.publish(t, new Uint8Array([2]))
      await bus.publish(topic('marker'), new Uint8Array([0]))
      await waitFor(() => marker.messages.length === 1)
      expect(mine.bytes()).toEqual([[1]])

      await bus.subscribe(t, mine.handler)
      await bus.publish(t, new Uint8Array([3]))
      await waitFor(() => mine.messages.length >= 2)
      expect(mine.bytes()).toEqual([[1], [3]])
    })

    it('ignores unsubscribing a handler that is not subscribed', async () => {
      const { bus, topic } = await open()
      const t = topic('t')
      const a = recorder()
      await bus.unsubscribe(topic('never'), a.handler)
      await bus.subscribe(t, a.handler)
      await bus.unsubscribe(t, () => {})
      await bus.unsubscribe(topic('other'), a.handler)
      await bus.publish(t, new Uint8Array([1]))
      await waitFor(() => a.messages.length >= 1)
      expect(a.bytes()).toEqual([[1]])
    })

    it('carries binary payloads byte for byte', async () => {
      const { bus, topic } = await open()
      const t = topic('binary')
      const received = recorder()
      await bus.subscribe(t, received.handler)

      const everyByte = Uint8Array.from({ length: 256 }, (_, index) => index)
      // A view into a larger buffer, surrounded by bytes that must not leak in.
      const backing = new Uint8Array(64).fill(0xee)
      backing.set([0, 1, 2, 0xff, 0x80, 0x7f, 0xc3, 0x28], 13)
      const view = new Uint8Array(backing.buffer, 13, 8)
      const large = new Uint8Array(64 * 1024)
      for (let index = 0; index < large.length; index++) large[index] = (index * 31 + (index >> 8)) & 0xff
      const nodeBuffer = Buffer.from('héllo \u0000 wörld')
      const payloads = [everyByte, view, new Uint8Array(0), large, nodeBuffer, new Uint8Array([0])]
      const expected = payloads.map((payload) => Uint8Array.from(payload))

      for (const payload of payloads) await bus.publish(t, payload)
      await waitFor(() => received.messages.length >= payloads.length)
      expect(received.messages).toHaveLength(payloads.length)
      for (const [index, message] of received.messages.entries()) {
        expect(message).toBeInstanceOf(Uint8Array)
        expect(message.byteLength).toBe(expected[index]!.byteLength)
        // Compared as Buffers: fast for the large payload, and blind to a different backing buffer.
        const same = Buffer.from(message.buffer, message.byteOffset, message.byteLength).equals(expected[index]!)
        expect(same, `payload ${index} differs`).toBe(true)
      }
      expect(Array.from(received.messages[1]!)).toEqual([0, 1, 2, 0xff, 0x80, 0x7f, 0xc3, 0x28])
    })
  })
}

/** A store that publishes channel messages, the bus it publishes on and the keys that name its topics. */
export interface PublishingStore {
  store: MeshStore
  bus: MeshBus
  keys: Keys
}

/** writeChannel's bus side: each message is published on the channel's topic as the same entry history holds. */
export function describeChannelPublishContract(name: string, create: () => Promise<PublishingStore>): void {
  describe(`${name} store publishes channel messages`, () => {
    it('publishes each entry on its channel topic, byte for byte as kept, also when none is kept', async () => {
      const { store, bus, keys } = await create()
      onTestFinished(async () => {
        await store.close()
        await bus.close()
      })
      const channels = ['p', 'p:q']
      const received = new Map(channels.map((channel) => [channel, recorder()]))
      for (const [channel, { handler }] of received) await bus.subscribe(keys.channelTopic(channel), handler)
      const writes: Array<[string, Uint8Array, number]> = [
        ['p', Uint8Array.from([0x3a, 0x00, 0x3a]), 5],
        ['p:q', Uint8Array.from([1, 2, 3]), 5],
        ['p', Uint8Array.from([0xff, 0x3a]), 5],
        ['p', new Uint8Array(0), 0],
      ]
      const offsets: number[] = []
      const kept = new Map<string, number[][]>()
      for (const [channel, message, limit] of writes) {
        offsets.push(await store.writeChannel(channel, message, limit))
        if (limit > 0) kept.set(channel, [...(kept.get(channel) ?? []), ...(await store.readChannel(channel, 1)).entries.map((entry) => Array.from(entry))])
      }
      // A closing marker per topic: one publisher's order means nothing published before it is still coming.
      const ends = new Map<string, number>()
      for (const channel of channels) ends.set(channel, await store.writeChannel(channel, Uint8Array.from([0x65]), 0))
      const last = (channel: string): number | undefined => decodeChannelEntry(received.get(channel)!.messages.at(-1) ?? new Uint8Array(0))?.offset
      await waitFor(() => channels.every((channel) => last(channel) === ends.get(channel)))
      // What was kept is exactly what was published.
      expect(received.get('p')!.bytes().slice(0, 2)).toEqual(kept.get('p'))
      expect(received.get('p:q')!.bytes().slice(0, -1)).toEqual(kept.get('p:q'))
      const published = received.get('p')!.messages.map((entry) => decodeChannelEntry(entry)!)
      expect(published.map(({ offset }) => offset)).toEqual([offsets[0], offsets[2], offsets[3], ends.get('p')])
      expect(published.map(({ message }) => Array.from(message))).toEqual([[0x3a, 0x00, 0x3a], [0xff, 0x3a], [], [0x65]])
    })

    it('publishes concurrent writes once each, in offset order, as history keeps them', async () => {
      const { store, bus, keys } = await create()
      onTestFinished(async () => {
        await store.close()
        await bus.close()
      })
      const channels = ['burst', 'burst:2']
      const received = new Map(channels.map((channel) => [channel, recorder()]))
      for (const [channel, { handler }] of received) await bus.subscribe(keys.channelTopic(channel), handler)
      const writes = Array.from({ length: 400 }, (_, n) => [channels[n % 2]!, Uint8Array.from([n % 256, n >> 8])] as const)
      const offsets = await Promise.all(writes.map(([channel, message]) => store.writeChannel(channel, message, 300)))
      for (const channel of channels) {
        const mine = writes.map(([name], index) => [name, index] as const).filter(([name]) => name === channel).map(([, index]) => index)
        const last = offsets[mine.at(-1)!]
        await waitFor(() => decodeChannelEntry(received.get(channel)!.messages.at(-1) ?? new Uint8Array(0))?.offset === last)
        const published = received.get(channel)!.messages.map((entry) => decodeChannelEntry(entry)!)
        expect(published.map(({ offset }) => offset)).toEqual(mine.map((index) => offsets[index]))
        expect(published.map(({ message }) => Array.from(message))).toEqual(mine.map((index) => Array.from(writes[index]![1])))
        const kept = (await store.readChannel(channel, -1)).entries.map((entry) => Array.from(entry)).reverse()
        expect(received.get(channel)!.bytes()).toEqual(kept)
      }
    })
  })
}
