import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { until } from './support/redis-cluster-node.js'
import { clusterClients } from './support/cluster-clients.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'

/**
 * What ioredis 5.11.1 really does with sharded pub/sub (SSUBSCRIBE/SPUBLISH) on a real
 * cluster, read from its source (built/cluster/ClusterSubscriberGroup.js, ShardedSubscriber.js,
 * DataHandler.js) and checked here. These tests pin the observed behaviour, good and bad,
 * so an ioredis upgrade that changes it shows up; docs/cluster.md draws the conclusions.
 */

/** The next `smessage` on `channel` (resolves with its payload), or a rejection after `timeoutMs`. */
function nextMessage(client: Cluster, channel: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('smessage', onMessage)
      reject(new Error(`no smessage on ${channel} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (received: string, message: string): void => {
      if (received !== channel) return
      clearTimeout(timer)
      client.off('smessage', onMessage)
      resolve(message)
    }
    client.on('smessage', onMessage)
  })
}

/** Settles with the promise's value, or `'pending'` if it has not settled after `ms`. */
function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending' | 'rejected'> {
  return Promise.race([
    promise.catch(() => 'rejected' as const),
    new Promise<'pending'>((resolve) => setTimeout(() => resolve('pending'), ms)),
  ])
}

describe('sharded pub/sub through ioredis Cluster (probe)', () => {
  let cluster: RedisCluster
  /** One channel per master, `probe:{n}`, so every test can pick a shard of its own. */
  const channels: string[] = []
  let publisher: Cluster

  const { cluster: connect, direct, disconnectAll } = clusterClients(() => cluster)
  /** How many clients the owning master counts on the channel (`PUBSUB SHARDNUMSUB`). */
  const receivers = async (channel: string): Promise<number> => {
    const owner = await cluster.masterOf(channel)
    const reply = (await direct(owner.port).call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number]
    return Number(reply[1])
  }

  beforeAll(async () => {
    cluster = await startRedisCluster()
    publisher = connect()
    const owners = new Set<number>()
    for (let n = 0; channels.length < 3; n++) {
      const owner = (await cluster.masterOf(`probe:{${n}}`)).port
      if (owners.has(owner)) continue
      owners.add(owner)
      channels.push(`probe:{${n}}`)
    }
  })
  afterAll(async () => {
    disconnectAll()
    await cluster?.stop()
  })

  it('without shardedSubscribers, SSUBSCRIBE uses one connection to one node: a channel of another shard never settles', async () => {
    const plain = connect()
    // ioredis sends every (S)SUBSCRIBE of a Cluster over its single subscriber connection;
    // on MOVED, DataHandler.returnError emits 'moved' and drops the command unsettled.
    const outcomes = await Promise.all(channels.map((channel) => settledWithin(plain.ssubscribe(channel), 2_000)))
    expect(outcomes.filter((outcome) => outcome === 'pending').length).toBeGreaterThanOrEqual(2)
    expect(outcomes.filter((outcome) => outcome !== 'pending').every((outcome) => outcome === 1)).toBe(true)
    plain.disconnect()
  })

  it('with shardedSubscribers, SSUBSCRIBE/SPUBLISH work per shard, and only the owner counts the subscription', async () => {
    const subscriber = connect({ shardedSubscribers: true })
    const [channel = ''] = channels
    expect(await subscriber.ssubscribe(channel)).toBe(1)
    const arrived = nextMessage(subscriber, channel)
    expect(await publisher.spublish(channel, 'hello')).toBe(1)
    expect(await arrived).toBe('hello')
    const owner = await cluster.masterOf(channel)
    const shardChannels = await Promise.all(
      cluster.nodes
        .filter((node) => node.role === 'master')
        .map(async (node) => [node.port, /pubsubshard_channels:(\d+)/.exec(await direct(node.port).info('stats'))?.[1]]),
    )
    expect(shardChannels.filter(([, count]) => count === '1').map(([port]) => port)).toEqual([owner.port])
    // Channels of two slots in one call are refused by the client itself (AbortError, not a server CROSSSLOT).
    await expect(subscriber.ssubscribe(channels[1] ?? '', channels[2] ?? '')).rejects.toThrow(/CROSSSLOT/)
    subscriber.disconnect()
  })

  it('after a failover it resubscribes on the promoted replica, but spins refreshing the slot map meanwhile', async () => {
    const subscriber = connect({ shardedSubscribers: true })
    const channel = channels[1] ?? ''
    await subscriber.ssubscribe(channel)
    let refreshes = 0
    subscriber.on('refresh', () => refreshes++)
    const { promoted } = await cluster.killMaster(channel)
    // The subscriber connection to the dead master has no retry strategy: each 'end' asks for a
    // slot refresh, which builds a new subscriber for the same dead node, which fails again...
    // until the cluster reports the promotion: 155 and 174 CLUSTER SLOTS calls in two runs here.
    expect(refreshes).toBeGreaterThan(5)
    await until('the promoted master to count the resubscription', async () => (await receivers(channel)) === 1, 5_000)
    expect((await cluster.masterOf(channel)).port).toBe(promoted.port)
    const arrived = nextMessage(subscriber, channel)
    expect(await publisher.spublish(channel, 'after failover')).toBe(1)
    expect(await arrived).toBe('after failover')
    subscriber.disconnect()
  })

  it('a client that publishes and subscribes itself resubscribes after a migration once its own SPUBLISH meets MOVED', async () => {
    // Sharded subscribers are connections of their own inside the Cluster, so one Cluster can
    // publish and subscribe; a MOVED on any of its commands refreshes its slot map.
    // No periodic slot refresh: under load one could resubscribe before the SPUBLISH below and hide the loss.
    const both = connect({ shardedSubscribers: true, slotsRefreshInterval: 0 })
    const channel = channels[0] ?? ''
    await both.ssubscribe(channel)
    const source = await cluster.masterOf(channel)
    const target = cluster.nodes.find((node) => node.role === 'master' && node.alive && node.port !== source.port)
    if (!target) throw new Error('no second master')
    await cluster.migrateSlot(await cluster.slotOf(channel), target)
    const ready = new Promise<void>((resolve) => both.once('subscribersReady', () => resolve()))
    // Follows MOVED to the new owner, where the dropped subscription is not back yet: lost.
    expect(await both.spublish(channel, 'lost')).toBe(0)
    await ready
    await until('the new owner to count the resubscription', async () => (await receivers(channel)) === 1, 5_000)
    const arrived = nextMessage(both, channel)
    expect(await both.spublish(channel, 'after MOVED')).toBe(1)
    expect(await arrived).toBe('after MOVED')
    both.disconnect()
  })

  it('after a slot migration the server drops the subscription and ioredis does not notice until its slot map is refreshed', async () => {
    const subscriber = connect({ shardedSubscribers: true })
    const channel = channels[2] ?? ''
    await subscriber.ssubscribe(channel)
    const slot = await cluster.slotOf(channel)
    const source = await cluster.masterOf(channel)
    const target = cluster.nodes.find((node) => node.role === 'master' && node.alive && node.port !== source.port)
    if (!target) throw new Error('no second master')
    let duringMigration: number | undefined
    const arrivedDuring = nextMessage(subscriber, channel)
    await cluster.migrateSlot(slot, target, {
      async duringMigration() {
        // Channels are no keys: while the slot is MIGRATING the source still takes SPUBLISH.
        duringMigration = Number(await publisher.spublish(channel, 'during migration'))
      },
    })
    expect(duringMigration).toBe(1)
    expect(await arrivedDuring).toBe('during migration')
    // SETSLOT NODE made the source send a SUNSUBSCRIBE push; DataHandler only records it.
    // The publisher follows MOVED to the new owner, where nobody listens: lost, silently.
    expect(await publisher.spublish(channel, 'lost')).toBe(0)
    // Nothing announces that ioredis has not resubscribed: watch a second (an observation
    // window, not a wait for an event), and the new owner still has no subscriber.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(await receivers(channel)).toBe(0)
    expect(await publisher.spublish(channel, 'still lost')).toBe(0)
    // A slot refresh of the subscribing client (refreshSlotsCache, slotsRefreshInterval or any
    // MOVED it meets) rebuilds the subscriber group and resubscribes on the new owner.
    const ready = new Promise<void>((resolve) => subscriber.once('subscribersReady', () => resolve()))
    subscriber.refreshSlotsCache()
    await ready
    await until('the new owner to count the resubscription', async () => (await receivers(channel)) === 1, 5_000)
    const arrived = nextMessage(subscriber, channel)
    expect(await publisher.spublish(channel, 'after refresh')).toBe(1)
    expect(await arrived).toBe('after refresh')
    subscriber.disconnect()
  })
})
