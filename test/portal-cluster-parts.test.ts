import { once } from 'node:events'
import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LeaseTable } from '../src/server/portal/lease-table.js'
import { PortalRegistryView } from '../src/server/portal/portal-registry-view.js'
import { StreamReader, type RawEntry } from '../src/server/portal/stream-reader.js'
import { Keys } from '../src/server/store/keys.js'
import { clusterClients } from './support/cluster-clients.js'
import { uniqueNamespace } from './support/cluster.js'
import { eventually, waitFor } from './support/harness.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'

/**
 * The portal's Redis parts on a real Redis Cluster, each on Clusters built here the
 * way `createRedisClient` builds them for a cluster config (no offline queue, command
 * timeout, auto-pipelining): the lease scripts and the registry topic (SPUBLISH in
 * the portal slot), the servers' registry read, and the one blocking XREADGROUP over
 * every stream, its wake-up by CLIENT UNBLOCK, a failover of the portal slot's
 * master under it, and the slot's migration to another master. A whole Portal on the
 * cluster: portal-side-cluster.test.ts; with a server: portals-cluster.test.ts.
 */
describe('portal parts on a Redis Cluster', () => {
  let cluster: RedisCluster
  const { cluster: connect, direct, disconnectAll } = clusterClients(() => cluster)

  /** A Cluster as createRedisClient makes one, ready. */
  async function ours(commandTimeout: number): Promise<Cluster> {
    const client = connect({ enableOfflineQueue: false, enableAutoPipelining: true, slotsRefreshInterval: 1_000, redisOptions: { commandTimeout } })
    await once(client, 'ready')
    return client
  }

  /** Whether the master owning `key`'s slot has a client blocked in XREADGROUP. */
  async function blockedOnMaster(key: string): Promise<boolean> {
    const master = await cluster.masterOf(key)
    const clients = String(await direct(master.port).call('CLIENT', 'LIST'))
    return clients.split('\n').some((line) => line.includes('cmd=xreadgroup') && / flags=\S*b/.test(line))
  }

  beforeAll(async () => {
    cluster = await startRedisCluster()
  })
  afterAll(async () => {
    disconnectAll()
    await cluster?.stop()
  })

  it('the heartbeat and leave scripts run in the portal slot and announce on the registry topic with SPUBLISH', async () => {
    const keys = new Keys(uniqueNamespace('portal-cluster'))
    const control = await ours(2_000)
    const subscriber = connect({ shardedSubscribers: true })
    const changes: string[] = []
    subscriber.on('smessage', (topic: string, message: string) => {
      if (topic === keys.portalRegistryChanges) changes.push(message)
    })
    await subscriber.ssubscribe(keys.portalRegistryChanges)
    const table = new LeaseTable(control, keys, 'g', 'portal-a', 5_000)
    const view = await table.heartbeat({ group: 'g', commands: ['echo'], since: 1 })
    expect(view.live.get('portal-a')).toEqual({ group: 'g', commands: ['echo'], since: 1 })
    await waitFor(() => changes.length === 1)
    expect(changes).toEqual(['portal-a'])
    // Unchanged announcement: no publish (the next change is the leave below).
    await table.heartbeat({ group: 'g', commands: ['echo'], since: 1 })
    expect(await table.take([0, 1, 2])).toEqual([1, 1, 1])
    expect(await table.take([0])).toEqual([2])
    await table.release([1])
    expect(await control.get(keys.portalLease('g', 1))).toBeNull()
    // The servers' registry read, also one script in the portal slot.
    const registry = new PortalRegistryView(control, keys, {}, () => {})
    await registry.refresh()
    expect(registry.groupOf('echo')).toBe('g')
    await control.xgroup('CREATE', keys.portalEvents(0), 'g', '0', 'MKSTREAM')
    await table.leave([keys.portalEvents(0)])
    await waitFor(() => changes.length === 2)
    expect(changes).toEqual(['portal-a', 'portal-a'])
    await registry.refresh()
    expect(registry.groupOf('echo')).toBeUndefined()
    expect(registry.isAnnounced('echo')).toBe(true)
  })

  describe('the blocking read', () => {
    const keys = new Keys(uniqueNamespace('portal-cluster'))
    const streamKeys = [keys.portalEvents(0), keys.portalEvents(5), keys.portalCommands('g', 'echo')]
    const BLOCK = 10_000
    let control: Cluster
    let reader: StreamReader
    let readable = streamKeys
    const delivered: string[] = []

    beforeAll(async () => {
      control = await ours(2_000)
      for (const key of streamKeys) await control.xgroup('CREATE', key, 'g', '0', 'MKSTREAM')
      // Allowed the block time on top of the command timeout, as the Portal's reader.
      const readerClient = await ours(2_000 + BLOCK)
      reader = new StreamReader(readerClient, control, 'g', 'portal-a', 100, BLOCK, {
        streams: () => readable,
        deliver: (key: string, entries: RawEntry[]) => {
          for (const [id] of entries) delivered.push(`${key} ${id}`)
        },
        recreateGroups: async () => {},
      }, {})
      reader.start()
    })
    afterAll(() => reader?.stop())

    /** Appends one entry (retried while the cluster fails over) and waits until the reader delivered it. */
    async function roundTrip(key: string): Promise<void> {
      const id = await eventually(async () => (await control.xadd(key, '*', 'n', '1')) as string, 20_000)
      await waitFor(() => delivered.includes(`${key} ${id}`), 20_000)
    }

    it('reads every stream in one XREADGROUP, routed to the portal slot\'s master', async () => {
      for (const key of streamKeys) await roundTrip(key)
      await eventually(async () => expect(await blockedOnMaster(streamKeys[0]!)).toBe(true))
    })

    /** Wakes the blocked reader and expects the read to end at once (it would only after BLOCK, 10 s, if the unblock missed). */
    async function wakeEndsRead(): Promise<void> {
      await eventually(async () => expect(await blockedOnMaster(streamKeys[0]!)).toBe(true))
      const started = performance.now()
      await reader.settled()
      expect(performance.now() - started).toBeLessThan(2_000)
    }

    it('wake() ends the blocked read at once: CLIENT UNBLOCK reaches the node holding it', async () => {
      // Five times: an UNBLOCK sent to a random master (as a Cluster sends keyless commands) would hit it one time in three.
      for (let i = 0; i < 5; i++) {
        readable = i % 2 === 0 ? streamKeys.slice(0, 1) : streamKeys
        await wakeEndsRead()
      }
      readable = streamKeys
    })

    it('outlives a failover of the portal slot\'s master: reads go on from the promoted replica without a restart', async () => {
      await eventually(async () => expect(await blockedOnMaster(streamKeys[0]!)).toBe(true))
      const { promoted } = await cluster.killMaster(streamKeys[0]!)
      expect((await cluster.masterOf(streamKeys[0]!)).port).toBe(promoted.port)
      for (const key of streamKeys) await roundTrip(key)
      // And the wake-up follows the read to its new node.
      await wakeEndsRead()
    }, 60_000)

    it('follows the portal slot when it migrates to another master (MOVED), reads and wake-ups included', async () => {
      await eventually(async () => expect(await blockedOnMaster(streamKeys[0]!)).toBe(true))
      const slot = await cluster.slotOf(streamKeys[0]!)
      const from = await cluster.masterOf(slot)
      const to = cluster.nodes.find((node) => node.role === 'master' && node.alive && node.port !== from.port)!
      await cluster.migrateSlot(slot, to)
      for (const key of streamKeys) await roundTrip(key)
      expect((await cluster.masterOf(slot)).port).toBe(to.port)
      await wakeEndsRead()
    }, 60_000)
  })
})
