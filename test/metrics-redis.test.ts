import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, rejectionOf, startServer } from './support/harness.js'
import { metric, scrape, valueOf } from './support/metrics.js'
import { startPortalServer } from './support/portals.js'
import { startRedisServer } from './support/redis-server.js'
import { rawRedis } from './support/redis-watch.js'

describe('metrics of instances sharing Redis', () => {
  it('count bus messages published by the sender and received by the instance holding the members, and channel writes where written', async () => {
    const [a, b] = (await startInstances(2, { metrics: true })) as [MeshServer, MeshServer]
    const client = await connectClient(b)
    await b.addToRoom('lobby', client.id!)
    const before = { published: await metric(a, 'meshkit_bus_messages_published_total'), received: await metric(b, 'meshkit_bus_messages_received_total') }
    for (let round = 0; round < 10; round++) {
      const arrived = nextEvent(client, 'news', 5_000, (payload) => payload === round)
      await a.broadcastRoom('lobby', 'news', round)
      await arrived
    }
    // At least one bus message per broadcast (liveness notices may add more meanwhile).
    expect((await metric(a, 'meshkit_bus_messages_published_total')) - before.published).toBeGreaterThanOrEqual(10)
    expect((await metric(b, 'meshkit_bus_messages_received_total')) - before.received).toBeGreaterThanOrEqual(10)
    // The events were written by b, which holds the member; a wrote none.
    expect(await metric(b, 'meshkit_events_written_total')).toBe(10)
    expect(await metric(a, 'meshkit_events_written_total')).toBe(0)

    await a.writeChannel('prices', 1)
    await a.writeChannel('prices', 2)
    expect(await metric(a, 'meshkit_channel_writes_total')).toBe(2)
    expect(await metric(b, 'meshkit_channel_writes_total')).toBe(0)
  })

  it('time Redis commands, and count Redis errors while Redis is stopped; /metrics still answers', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('metrics'), redisTimeout: 500, metrics: true, portal: { enabled: true } })
    const client = await connectClient(server)
    let samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_redis_command_duration_seconds_count')).toBeGreaterThan(0)
    expect(valueOf(samples, 'meshkit_redis_command_duration_seconds_bucket', { le: '+Inf' })).toBe(valueOf(samples, 'meshkit_redis_command_duration_seconds_count'))
    expect(valueOf(samples, 'meshkit_redis_errors_total', { kind: 'connection' })).toBe(0)

    await redis.stop()
    await eventually(async () => expect(await metric(server, 'meshkit_redis_errors_total', { kind: 'connection' })).toBeGreaterThan(0))
    const failedBefore = await metric(server, 'meshkit_redis_errors_total', { kind: 'command' })
    expect((await rejectionOf(server.addToRoom('lobby', client.id!))).code).toBe(ErrorCode.UNAVAILABLE)
    samples = await scrape(server)
    expect(valueOf(samples, 'meshkit_redis_errors_total', { kind: 'command' })).toBeGreaterThan(failedBefore)
    // The portal backlog cannot be read without Redis: the scrape answers without it.
    expect(samples.some((sample) => sample.name === 'meshkit_portal_backlog')).toBe(false)
    expect(valueOf(samples, 'meshkit_connections')).toBe(1)
  })

  it('show the backlog of a portal group that reads nothing', async () => {
    const namespace = uniqueNamespace('portal-metrics')
    const partitions = 2
    const server = await startPortalServer({ namespace, metrics: true, portal: { enabled: true, partitions } })
    const redis = await rawRedis()
    const keys = new Keys(namespace)
    // A group made as portals make theirs, whose portal never reads (gone, or stuck).
    for (let partition = 0; partition < partitions; partition++) await redis.xgroup('CREATE', keys.portalEvents(partition), 'laggards', '$', 'MKSTREAM')
    expect(await metric(server, 'meshkit_portal_backlog', { group: 'laggards' })).toBe(0)
    // Each connection is one portal event (its connection event).
    for (let i = 0; i < 3; i++) await connectClient(server)
    await eventually(async () => expect(await metric(server, 'meshkit_portal_backlog', { group: 'laggards' })).toBe(3))
  })
})
