import type { ClusterNode } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { Portal, type MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, startServer } from './support/harness.js'
import { allDisconnected, eventLine, expectedLine, PORTAL_TTL, recordEvents, ReportLog, sendSteps } from './support/portals.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'

/**
 * A server and a Portal on a real Redis Cluster (3 masters, 3 replicas): every portal
 * key and the registry topic share the portal slot, so the portal's scripts and its
 * one blocking read run on that slot's master, and the servers reach the portal
 * through sharded pub/sub. The last test kills that master (one failover per file:
 * the killed shard has no replica left).
 */
describe('portals on a Redis Cluster', () => {
  let cluster: RedisCluster
  const redis = (): ClusterNode[] => cluster.startupNodes.map(({ host, port }) => ({ host, port }))

  beforeAll(async () => {
    cluster = await startRedisCluster()
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  async function portalOn(namespace: string, configure: (portal: Portal) => void): Promise<Portal> {
    const portal = new Portal(redis(), { namespace, ttl: PORTAL_TTL })
    onTestFinished(() => portal.close())
    configure(portal)
    await portal.ready()
    return portal
  }

  function serverOn(namespace: string): Promise<MeshServer> {
    return startServer({ redis: redis(), namespace, portal: { enabled: true } }, (server) => {
      server.onAuthenticate((credentials) => ({ id: (credentials as { name: string }).name }))
    })
  }

  /** A portal answering `echo` with the payload and where the call came from, and recording every event into `log`. */
  function echoPortal(namespace: string, log: ReportLog): Promise<Portal> {
    return portalOn(namespace, (portal) => {
      recordEvents(portal, log)
      portal.registerCommand('echo', (ctx) => ({ payload: ctx.payload, connection: ctx.connection.id, instance: ctx.connection.instanceId, user: ctx.connection.userId }))
    })
  }

  it('a command no server handles is forwarded to the portal and answered', async () => {
    const namespace = uniqueNamespace('portal-cluster')
    await echoPortal(namespace, new ReportLog())
    const server = await serverOn(namespace)
    const client = await connectClient(server)
    await client.authenticate({ name: 'ada' })
    expect(await client.command('echo', { n: 1 })).toEqual({ payload: { n: 1 }, connection: client.id, instance: server.instanceId, user: 'ada' })
    const replies = await Promise.all([2, 3, 4].map((n) => client.command<{ payload: { n: number } }>('echo', { n })))
    expect(replies.map((reply) => reply.payload.n)).toEqual([2, 3, 4])
  })

  it('client messages reach the portal in order per connection, between its connection and disconnection', async () => {
    const namespace = uniqueNamespace('portal-cluster')
    const log = new ReportLog()
    await echoPortal(namespace, log)
    const server = await serverOn(namespace)
    const clients = await Promise.all([0, 1, 2].map(() => connectClient(server)))
    const ids = clients.map((client) => client.id!)
    sendSteps(clients, 0, 30)
    // A client's messages are written before its disconnection: closing right after sending keeps them.
    await Promise.all(clients.map((client) => client.close()))
    await log.until(allDisconnected(ids), 15_000)
    for (const id of ids) expect(eventLine(log.reports, id)).toEqual(expectedLine(30))
  })

  it('outlives a failover of the portal slot\'s master: commands are answered and messages handled again, without a restart', async () => {
    const namespace = uniqueNamespace('portal-cluster')
    const log = new ReportLog()
    const portal = await echoPortal(namespace, log)
    const server = await serverOn(namespace)
    const before = await connectClient(server)
    expect(await before.command('echo', 'before')).toMatchObject({ payload: 'before' })
    const { killed, promoted } = await cluster.killMaster(new Keys(namespace).portalLiveness)
    expect(promoted.port).not.toBe(killed.port)
    // Until the portal heartbeats again and the server reads the registry, calls may fail (UNAVAILABLE, TIMEOUT): then they are answered.
    // A call whose stream entry or reply was on the dead master is lost with it and would only end at the
    // 30 s default timeout: each try gets 3 s, so the ones after the failover are what is judged.
    await eventually(async () => expect(await before.command('echo', 'after', 3_000)).toMatchObject({ payload: 'after' }), 20_000)
    const after = await connectClient(server)
    sendSteps([after], 0, 20)
    const afterId = after.id!
    await after.close()
    await log.until(allDisconnected([afterId]), 15_000)
    expect(eventLine(log.reports, afterId)).toEqual(expectedLine(20))
    expect(portal.stats.failed).toBe(0)
  }, 60_000)
})
