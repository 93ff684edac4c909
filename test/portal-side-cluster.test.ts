import { once } from 'node:events'
import type { Cluster, ClusterNode } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { Portal, type PortalContext } from 'meshkit/server'
import { decodeReply, entryFields, EntryKind, partitionOf, DEFAULT_PARTITIONS, type CommandReply, type EntryBody } from '../src/server/portal/stream-format.js'
import { Keys } from '../src/server/store/keys.js'
import { clusterClients } from './support/cluster-clients.js'
import { uniqueNamespace } from './support/cluster.js'
import { eventually, waitFor } from './support/harness.js'
import { INSTANCE, TTL } from './support/portal-streams.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'

/**
 * A Portal on a real Redis Cluster with no server: the test writes entries into the
 * streams as a server would (stream-format.ts) and listens for replies on the
 * instance's reply topic with SSUBSCRIBE. What a MeshServer adds on the cluster:
 * portals-cluster.test.ts. The last test kills the portal slot's master (one
 * failover per file: the killed shard has no replica left).
 */
describe('a Portal on a Redis Cluster', () => {
  let cluster: RedisCluster
  let writer: Cluster
  const { cluster: connect, disconnectAll } = clusterClients(() => cluster)

  beforeAll(async () => {
    cluster = await startRedisCluster()
    writer = connect()
    await once(writer, 'ready')
  })
  afterAll(async () => {
    disconnectAll()
    await cluster?.stop()
  })

  function portalOn(namespace: string, configure: (portal: Portal) => void): Promise<Portal> {
    const nodes: ClusterNode[] = cluster.startupNodes.map(({ host, port }) => ({ host, port }))
    const portal = new Portal(nodes, { namespace, ttl: TTL })
    onTestFinished(() => portal.close())
    configure(portal)
    return portal.ready().then(() => portal)
  }

  /** Appends an event as a server would; retried while the cluster fails over. */
  function event(keys: Keys, kind: EntryKind, connection: string, body: EntryBody = {}): Promise<string> {
    const key = keys.portalEvents(partitionOf(connection, DEFAULT_PARTITIONS))
    return eventually(async () => (await writer.xadd(key, '*', ...entryFields(kind, connection, INSTANCE, body))) as string, 20_000)
  }

  /** Forwards a call of `echo` as a server would and resolves with the reply published on the instance's reply topic. */
  async function replies(keys: Keys): Promise<{ call(payload: unknown): Promise<CommandReply> }> {
    const subscriber = connect({ shardedSubscribers: true })
    const waiting = new Map<string, (reply: CommandReply) => void>()
    subscriber.on('smessageBuffer', (_topic: Buffer, message: Buffer) => {
      const reply = decodeReply(message)
      if (reply) waiting.get(reply[0])?.(reply)
    })
    await subscriber.ssubscribe(keys.portalReplies(INSTANCE))
    let next = 0
    return {
      async call(payload) {
        const token = `t${next++}`
        const replied = new Promise<CommandReply>((resolve) => waiting.set(token, resolve))
        const body = { name: 'echo', payload, token, deadline: Date.now() + 10_000 } as EntryBody
        await eventually(() => writer.xadd(keys.portalCommands('default', 'echo'), '*', ...entryFields(EntryKind.COMMAND, 'c-1', INSTANCE, body)), 20_000)
        return replied
      },
    }
  }

  /** Records each connection's events as `kind[:type]`. */
  function record(portal: Portal): Map<string, string[]> {
    const lines = new Map<string, string[]>()
    const note = (ctx: PortalContext): void => {
      const line = lines.get(ctx.connection.id) ?? []
      // At-least-once: a redelivery after the failover repeats an event id; order is what is asserted.
      if (!line.some((seen) => seen.startsWith(`${ctx.eventId} `))) line.push(`${ctx.eventId} ${ctx.kind}${ctx.type === undefined ? '' : `:${ctx.type}`}`)
      lines.set(ctx.connection.id, line)
    }
    portal.onConnection(note)
    portal.onMessage('*', note)
    portal.onDisconnection(note)
    return lines
  }

  /** Writes connect, `count` messages and disconnect for every connection, interleaved; returns what each should see. */
  async function lives(keys: Keys, ids: readonly string[], count: number, from = 0): Promise<string[]> {
    for (const id of ids) await event(keys, EntryKind.CONNECTION, id, { handshake: { headers: {}, query: {}, address: '127.0.0.1' } })
    for (let m = from; m < from + count; m++) for (const id of ids) await event(keys, EntryKind.MESSAGE, id, { type: `m${m}`, data: m })
    for (const id of ids) await event(keys, EntryKind.DISCONNECTION, id, { code: 1000, reason: 'bye' })
    return ['connection', ...Array.from({ length: count }, (_, i) => `message:m${from + i}`), 'disconnection']
  }

  const kinds = (line: readonly string[] | undefined): string[] => (line ?? []).map((entry) => entry.split(' ')[1]!)

  it('handles the events of every partition in order per connection', async () => {
    const keys = new Keys(uniqueNamespace('portal-side-cluster'))
    let lines!: Map<string, string[]>
    await portalOn(keys.namespace, (portal) => (lines = record(portal)))
    const ids = ['a', 'b', 'c', 'd', 'e']
    const expected = await lives(keys, ids, 10)
    await waitFor(() => ids.every((id) => lines.get(id)?.length === expected.length), 15_000)
    for (const id of ids) expect(kinds(lines.get(id))).toEqual(expected)
  })

  it('answers a forwarded command on the instance\'s reply topic (sharded pub/sub)', async () => {
    const keys = new Keys(uniqueNamespace('portal-side-cluster'))
    await portalOn(keys.namespace, (portal) => portal.registerCommand('echo', (ctx) => ({ echoed: ctx.payload })))
    const server = await replies(keys)
    const reply = await server.call({ n: 1 })
    expect(reply.slice(1)).toEqual([1, { echoed: { n: 1 } }])
  })

  it('outlives a failover of the portal slot\'s master: new events and commands are handled, without a restart', async () => {
    const keys = new Keys(uniqueNamespace('portal-side-cluster'))
    let lines!: Map<string, string[]>
    const portal = await portalOn(keys.namespace, (created) => {
      lines = record(created)
      created.registerCommand('echo', (ctx) => ({ echoed: ctx.payload }))
    })
    const server = await replies(keys)
    expect((await server.call('before')).slice(1)).toEqual([1, { echoed: 'before' }])
    await cluster.killMaster(keys.portalLiveness)
    const ids = ['f', 'g', 'h']
    const expected = await lives(keys, ids, 10)
    await waitFor(() => ids.every((id) => lines.get(id)?.length === expected.length), 20_000)
    for (const id of ids) expect(kinds(lines.get(id))).toEqual(expected)
    expect((await server.call('after')).slice(1)).toEqual([1, { echoed: 'after' }])
    expect(portal.stats.failed).toBe(0)
  }, 60_000)
})
