import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshBus, MeshStore } from 'meshkit/server'
import { deferred } from './harness.js'

/** The behaviour every MeshStore must share; run against each implementation. */
export function describeStoreContract(name: string, create: () => MeshStore | Promise<MeshStore>): void {
  describe(`${name} store contract`, () => {
    async function open(): Promise<MeshStore> {
      const store = await create()
      onTestFinished(() => store.close())
      return store
    }

    it('records and forgets which instance owns a connection', async () => {
      const store = await open()
      await store.addConnection('c1', 'i1')
      await store.addConnection('c2', 'i1')
      await store.addConnection('c3', 'i2')
      expect(await store.getConnectionInstance('c1')).toBe('i1')
      expect((await store.getInstanceConnections('i1')).sort()).toEqual(['c1', 'c2'])
      expect(await store.getInstanceConnections('i2')).toEqual(['c3'])
      await store.removeConnection('c1')
      expect(await store.getConnectionInstance('c1')).toBeUndefined()
      expect(await store.getInstanceConnections('i1')).toEqual(['c2'])
    })

    it('moves a connection re-added under another instance', async () => {
      const store = await open()
      await store.addConnection('c1', 'i1')
      await store.addConnection('c1', 'i2')
      expect(await store.getConnectionInstance('c1')).toBe('i2')
      expect(await store.getInstanceConnections('i1')).toEqual([])
    })

    it('treats removing an unknown connection as a no-op', async () => {
      const store = await open()
      await store.removeConnection('nobody')
      expect(await store.getInstanceConnections('i1')).toEqual([])
    })

    it('keeps prototype names as ordinary ids', async () => {
      const store = await open()
      await store.addConnection('__proto__', 'constructor')
      expect(await store.getConnectionInstance('__proto__')).toBe('constructor')
      expect(await store.getConnectionInstance('toString')).toBeUndefined()
    })
  })
}

/** The behaviour every MeshBus must share. */
export function describeBusContract(name: string, create: () => MeshBus | Promise<MeshBus>): void {
  describe(`${name} bus contract`, () => {
    async function open(): Promise<MeshBus> {
      const bus = await create()
      onTestFinished(() => bus.close())
      return bus
    }

    it('delivers each message once to every subscriber of its topic, in publish order', async () => {
      const bus = await open()
      const a: number[] = []
      const b: number[] = []
      const done = deferred()
      await bus.subscribe('t', (message) => a.push(message[0]!))
      await bus.subscribe('t', (message) => {
        b.push(message[0]!)
        if (b.length === 3) done.resolve()
      })
      for (const n of [1, 2, 3]) await bus.publish('t', new Uint8Array([n]))
      await done.promise
      expect(a).toEqual([1, 2, 3])
      expect(b).toEqual([1, 2, 3])
    })

    it('keeps topics apart and stops delivering after unsubscribe', async () => {
      const bus = await open()
      const other: number[] = []
      const mine: number[] = []
      const first = deferred()
      const handler = (message: Uint8Array): void => {
        mine.push(message[0]!)
        first.resolve()
      }
      const marker = deferred()
      await bus.subscribe('other', (message) => other.push(message[0]!))
      await bus.subscribe('mine', handler)
      await bus.subscribe('marker', () => marker.resolve())
      await bus.publish('mine', new Uint8Array([1]))
      await first.promise
      await bus.unsubscribe('mine', handler)
      await bus.publish('mine', new Uint8Array([2]))
      await bus.publish('marker', new Uint8Array([0]))
      await marker.promise
      expect(mine).toEqual([1])
      expect(other).toEqual([])
    })
  })
}
