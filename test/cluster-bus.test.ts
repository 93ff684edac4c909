import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { Dispatcher, MeshServer } from 'meshkit/server'
import { ClusterBus } from '../src/server/store/cluster-bus.js'
import { Keys } from '../src/server/store/keys.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { clusterClients } from './support/cluster-clients.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent } from './support/harness.js'
import { startRedisCluster, type RedisCluster, type RedisClusterNode } from './support/redis-cluster.js'

/**
 * The sharded pub/sub bus (cluster-bus.ts) on a real 3-master cluster: SSUBSCRIBE on the
 * owner shard only, and the topics subscribed again, with `onReconnect`, after a failover
 * and after a slot migration (which ioredis alone does not notice).
 */

const TIMEOUT = 1_000

/** A command client and a bus on it, closed after the test. */
function busOn(cluster: RedisCluster): { bus: ClusterBus; client: Cluster } {
  const client = createRedisClient(cluster.startupNodes, { commandTimeout: TIMEOUT }) as Cluster
  client.on('error', () => {})
  client.on('node error', () => {})
  const bus = new ClusterBus(client, { readyTimeout: 5_000, commandTimeout: TIMEOUT })
  onTestFinished(async () => {
    await bus.close()
    client.disconnect()
  })
  return { bus, client }
}

/** The next message the bus hands to a handler of `topic`, as text. */
function nextOn(bus: ClusterBus, topic: string, accept: (text: string) => boolean = () => true): { subscribed: Promise<void>; message: Promise<string> } {
  let subscribed!: Promise<void>
  const message = new Promise<string>((resolve) => {
    const handler = (bytes: Uint8Array): void => {
      const text = Buffer.from(bytes).toString()
      if (!accept(text)) return
      void bus.unsubscribe(topic, handler).catch(() => {})
      resolve(text)
    }
    subscribed = bus.subscribe(topic, handler)
  })
  return { subscribed, message }
}

const text = (value: string): Uint8Array => Buffer.from(value)
const reconnected = (bus: ClusterBus): Promise<void> => new Promise((resolve) => bus.onReconnect(resolve))

describe('sharded pub/sub bus on Redis Cluster', () => {
  let cluster: RedisCluster
  /** One topic per master, `bus:{n}`: each test takes its own. */
  const topics: string[] = []
  const { direct, disconnectAll } = clusterClients(() => cluster)
  const masters = (): RedisClusterNode[] => cluster.nodes.filter((node) => node.role === 'master' && node.alive)
  /** How many subscribers each live master counts on the topic (`PUBSUB SHARDNUMSUB`), by port. */
  const receivers = async (topic: string): Promise<Map<number, number>> =>
    new Map(
      await Promise.all(
        masters().map(async (node) => {
          const reply = (await direct(node.port).call('PUBSUB', 'SHARDNUMSUB', topic)) as [string, number]
          return [node.port, Number(reply[1])] as const
        }),
      ),
    )
  const pickTopics = async (count: number, prefix: string): Promise<string[]> => {
    const picked: string[] = []
    const owners = new Set<number>()
    for (let n = 0; picked.length < count; n++) {
      const owner = (await cluster.masterOf(`${prefix}:{${n}}`)).port
      if (owners.has(owner)) continue
      owners.add(owner)
      picked.push(`${prefix}:{${n}}`)
    }
    return picked
  }

  beforeAll(async () => {
    cluster = await startRedisCluster()
    topics.push(...(await pickTopics(3, 'bus')))
  }, 30_000)
  afterAll(async () => {
    disconnectAll()
    await cluster?.stop()
  })

  it("copies a user's Cluster with its redisOptions, adds our guarantees, and never closes it", async () => {
    const mine = clusterClients(() => cluster).cluster({ redisOptions: { connectionName: 'users-own' } })
    const copy = createRedisClient(mine, { commandTimeout: 1_234 }) as Cluster
    copy.on('error', () => {})
    expect(copy).not.toBe(mine)
    expect(copy.options).toMatchObject({ enableOfflineQueue: false, enableAutoPipelining: true, slotsRefreshInterval: 1_000 })
    expect(copy.options.redisOptions).toMatchObject({ connectionName: 'users-own', commandTimeout: 1_234 })
    await whenReady(copy, 5_000)
    // Commands of several slots at once go out as one pipeline per node (auto-pipelining).
    expect(await Promise.all(topics.map((topic) => copy.set(`${topic}:k`, topic)))).toEqual(topics.map(() => 'OK'))
    await copy.quit()
    expect(await mine.ping()).toBe('PONG')
    mine.disconnect()
  })

  it('delivers across buses on every shard; only the owner shard carries each topic; flush round-trips every shard', async () => {
    const receiving = busOn(cluster).bus
    const sending = busOn(cluster).bus
    let reconnects = 0
    receiving.onReconnect(() => reconnects++)
    const received: string[] = []
    const handler = (bytes: Uint8Array): void => void received.push(Buffer.from(bytes).toString())
    // subscribe resolves once the owner confirmed it: a publish after that must arrive.
    await Promise.all(topics.map((topic) => receiving.subscribe(topic, handler)))
    for (const topic of topics) {
      const owner = (await cluster.masterOf(topic)).port
      const counts = await receivers(topic)
      expect([...counts].filter(([, count]) => count > 0)).toEqual([[owner, 1]])
    }
    await Promise.all(topics.map((topic) => sending.publish(topic, text(`to ${topic}`))))
    // Each shard answers the PING after the messages it published before: no waiting needed.
    await receiving.flush()
    expect(received.sort()).toEqual(topics.map((topic) => `to ${topic}`).sort())
    expect(receiving.ready()).toBe(true)
    await Promise.all(topics.map((topic) => receiving.unsubscribe(topic, handler)))
    // Shards connecting for the first time are no reconnect: nothing was lost.
    expect(reconnects).toBe(0)
    for (const topic of topics) expect([...(await receivers(topic)).values()].every((count) => count === 0)).toBe(true)
  })

  it('after a failover, subscribes again on the promoted replica and runs onReconnect; later messages arrive, without a CLUSTER SLOTS storm', async () => {
    const { bus, client } = busOn(cluster)
    const sending = busOn(cluster).bus
    const topic = topics[1]!
    await bus.subscribe(topic, () => {})
    let refreshes = 0
    client.on('refresh', () => refreshes++)
    let reconnectedAt = 0
    const back = reconnected(bus).then(() => (reconnectedAt = Date.now()))
    const started = Date.now()
    const { promoted } = await cluster.killMaster(topic)
    const promotedAt = Date.now()
    await back
    const after = reconnectedAt - started
    expect((await receivers(topic)).get(promoted.port)).toBe(1)
    const next = nextOn(bus, topic, (value) => value === 'after failover')
    await next.subscribed
    await sending.publish(topic, text('after failover'))
    expect(await next.message).toBe('after failover')
    // ioredis's shardedSubscribers: 155 and 174 in ~2.5 s (the probe). Ours: the 1 s interval plus
    // one per failed reconnect of the dead master's subscriber (backoff 50 ms .. 2 s).
    expect(refreshes).toBeLessThan(Math.max(20, (after / 1000) * 6))
    console.info(`[cluster-bus] failover: onReconnect ${after} ms after the kill (${reconnectedAt - promotedAt} ms after the harness saw the cluster ok), ${refreshes} CLUSTER SLOTS refreshes on the bus's client`)
  }, 30_000)

  it('after its slot migrates, subscribes again on the new owner and runs onReconnect within about a second', async () => {
    const { bus } = busOn(cluster)
    const sending = busOn(cluster).bus
    const topic = topics[2]!
    await bus.subscribe(topic, () => {})
    const source = await cluster.masterOf(topic)
    const target = masters().find((node) => node.port !== source.port)!
    const back = reconnected(bus)
    await cluster.migrateSlot(await cluster.slotOf(topic), target)
    const moved = Date.now()
    await back
    const after = Date.now() - moved
    expect(after).toBeLessThan(2_500)
    expect((await receivers(topic)).get(target.port)).toBe(1)
    const next = nextOn(bus, topic, (value) => value === 'after migration')
    await next.subscribed
    await sending.publish(topic, text('after migration'))
    expect(await next.message).toBe('after migration')
    console.info(`[cluster-bus] migration: onReconnect ${after} ms after the slot moved`)
  }, 30_000)

  it('a shard subscriber connection dropped by its master reconnects, subscribes again and runs onReconnect', async () => {
    const { bus } = busOn(cluster)
    const sending = busOn(cluster).bus
    const topic = topics[0]!
    await bus.subscribe(topic, () => {})
    const owner = await cluster.masterOf(topic)
    const back = reconnected(bus)
    await direct(owner.port).call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    await back
    expect((await receivers(topic)).get(owner.port)).toBe(1)
    const next = nextOn(bus, topic, (value) => value === 'after kill')
    await next.subscribed
    await sending.publish(topic, text('after kill'))
    expect(await next.message).toBe('after kill')
  })

  // Servers and a Dispatcher end to end: they need the store's single-slot scripts as much as the bus.
  describe('servers and a Dispatcher on the cluster', () => {
    const serverOn = async (namespace: string): Promise<MeshServer> => {
      const server = new MeshServer({ host: '127.0.0.1', port: 0, redis: cluster.startupNodes, namespace, instanceTtl: 2_000 })
      onTestFinished(() => server.close())
      await server.ready()
      return server
    }

    it('two instances do a room broadcast and a sendTo across instances', async () => {
      const namespace = uniqueNamespace('cluster-bus')
      const [a, b] = [await serverOn(namespace), await serverOn(namespace)]
      const client = await connectClient(b)
      await b.addToRoom('lobby', client.id!)
      const broadcast = nextEvent(client, 'hello')
      await a.broadcastRoom('lobby', 'hello', 'room')
      expect(await broadcast).toBe('room')
      const direct = nextEvent(client, 'direct')
      await a.sendTo(client.id!, 'direct', 'to you')
      expect(await direct).toBe('to you')
    }, 30_000)

    it('a channel whose slot migrates under a subscribed client: later writes arrive, and a write lost in the move is never silent', async () => {
      const namespace = uniqueNamespace('cluster-migrate')
      const [a, b] = [await serverOn(namespace), await serverOn(namespace)]
      for (const server of [a, b]) server.exposeChannel('news')
      const client = await connectClient(b)
      const live: unknown[] = []
      const recoveries: unknown[] = []
      client.on('recovery', (event) => recoveries.push(event))
      await client.subscribe('news', (message) => live.push(message), { historyLimit: 10 })
      await a.writeChannel('news', 'before', 100)
      const slot = await cluster.slotOf(new Keys(namespace).channelTopic('news'))
      const source = await cluster.masterOf(slot)
      const target = masters().find((node) => node.port !== source.port)!
      // Written while the slot's keys are on the target (ASK) and b still listens on the source:
      // its live SPUBLISH on the target reaches nobody.
      await cluster.migrateSlot(slot, target, { duringMigration: async () => void (await a.writeChannel('news', 'during', 100)) })
      for (const n of [1, 2, 3]) await a.writeChannel('news', `after ${n}`, 100)
      await eventually(async () => expect(live.slice(-3)).toEqual(['after 1', 'after 2', 'after 3']))
      // Either it arrived, or the client was told the channel has a gap (offsets jumped).
      if (live.includes('during')) expect(live).toEqual(['before', 'during', 'after 1', 'after 2', 'after 3'])
      else expect(recoveries).toEqual([expect.objectContaining({ channel: 'news', complete: false })])
    }, 30_000)

    it('a Dispatcher reaches a client of a server', async () => {
      const namespace = uniqueNamespace('cluster-dispatch')
      const server = await serverOn(namespace)
      const client = await connectClient(server)
      const dispatcher = new Dispatcher(cluster.startupNodes, { namespace, redisTimeout: 2_000 })
      onTestFinished(() => dispatcher.close())
      const arrived = nextEvent(client, 'note')
      await dispatcher.sendTo([client.id!], 'note', 'from afar')
      expect(await arrived).toBe('from afar')
    }, 30_000)
  })
})

describe('redis option validation', () => {
  it('accepts cluster startup nodes and refuses an empty or malformed list, at construction', () => {
    const thrown = (make: () => unknown): unknown => {
      try {
        make()
      } catch (error) {
        return error
      }
      return undefined
    }
    expect(thrown(() => new MeshServer({ port: 0, redis: [] }))).toBeInstanceOf(TypeError)
    expect(thrown(() => new MeshServer({ port: 0, redisOptions: [null] as never }))).toBeInstanceOf(TypeError)
    expect(thrown(() => new Dispatcher([]))).toBeInstanceOf(TypeError)
    expect(thrown(() => new Dispatcher(42 as never))).toBeInstanceOf(TypeError)
  })
})
