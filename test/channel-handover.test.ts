import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import type { RecoveryEvent } from 'meshkit/client'
import { Dispatcher } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, startServer } from './support/harness.js'

// Two ways a channel message could be lost without a word when Redis changes hands
// (a failover, a restart, a slot moving), proven on one Redis where each can be staged
// exactly; test/cluster-faults.test.ts meets the same on a real cluster.

function admin(): Redis {
  const redis = new Redis(inject('redisUrl'))
  onTestFinished(() => redis.quit().then(() => undefined))
  return redis
}

describe('channels when Redis changes hands', () => {
  it('a Redis process that lacks acknowledged writes never hands their offsets out again: the client sees a gap, not a silent drop', async () => {
    const namespace = uniqueNamespace('epoch')
    const keys = new Keys(namespace)
    const redis = admin()
    const server = await startServer({ redis: inject('redisUrl'), namespace }, (s) => s.exposeChannel('feed'))
    const client = await connectClient(server)
    const received: unknown[] = []
    const recoveries: RecoveryEvent[] = []
    client.on('recovery', (event) => recoveries.push(event))
    expect((await client.subscribe('feed', (message) => received.push(message))).success).toBe(true)

    const first = await server.writeChannel('feed', 'kept', 10)
    // What a replica promoted by a failover holds when asynchronous replication had not
    // sent it the next two acknowledged writes: the counter and history as of `first`,
    // written last by another Redis process (the dead master) as far as it knows.
    const [sequence, base, history] = await Promise.all([redis.get(keys.channelSequence('feed')), redis.get(keys.channelBase('feed')), redis.lrange(keys.channelHistory('feed'), 0, -1)])
    expect(Number(sequence)).toBe(first)
    expect(await server.writeChannel('feed', 'lost 1', 10)).toBe(first + 1)
    expect(await server.writeChannel('feed', 'lost 2', 10)).toBe(first + 2)
    await eventually(async () => expect(received).toEqual(['kept', 'lost 1', 'lost 2']))
    await redis
      .multi()
      .set(keys.channelSequence('feed'), sequence!)
      .set(keys.channelBase('feed'), base!)
      .del(keys.channelHistory('feed'))
      .rpush(keys.channelHistory('feed'), ...history)
      .set(keys.channelEpoch('feed'), 'the-dead-master')
      .exec()

    // Without the epoch rule this write got first + 1, and the client dropped it as a repeat.
    const after = await server.writeChannel('feed', 'after the failover', 10)
    expect(after).toBeGreaterThan(first + 2)
    await eventually(async () => expect(received).toEqual(['kept', 'lost 1', 'lost 2', 'after the failover']))
    expect(recoveries).toEqual([{ channel: 'feed', complete: false, missed: 0, subscribed: true }])

    // A client that resumes from before the jump hears that history cannot say what it missed.
    // (`mesh/subscribe` with `since` is what a reconnecting client sends: docs/protocol.md.)
    const late = await connectClient(server)
    const resumed = await late.command('mesh/subscribe', { channel: 'feed', since: first })
    expect(resumed).toMatchObject({ success: true, complete: false, offset: after })
    // The same process writing again: no jump.
    expect(await server.writeChannel('feed', 'next', 10)).toBe(after + 1)
  })

  it('messages published while the bus was away reach subscribers from history, once and in order, with no gap reported', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('catch-up')
    const keys = new Keys(namespace)
    const redis = admin()
    const server = await startServer({ redis: inject('redisUrl'), namespace }, (s) => s.exposeChannel('feed'))
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace })
    onTestFinished(() => dispatcher.close())
    const client = await connectClient(server)
    const received: unknown[] = []
    const recoveries: RecoveryEvent[] = []
    client.on('recovery', (event) => recoveries.push(event))
    expect((await client.subscribe('feed', (message) => received.push(message))).success).toBe(true)
    await dispatcher.writeChannel('feed', 'm1', 100)
    await eventually(async () => expect(received).toEqual(['m1']))

    const listeners = async (): Promise<number> => Number(((await redis.pubsub('NUMSUB', keys.channelTopic('feed'))) as [string, number])[1])
    // Drops the server's subscriber connection: it reconnects after its backoff (≥ 50 ms), and
    // what is published before that reaches no one here.
    await redis.client('KILL', 'TYPE', 'pubsub')
    expect(await listeners()).toBe(0)
    for (const message of ['m2', 'm3', 'm4']) await dispatcher.writeChannel('feed', message, 100)
    // Published with no listener: live delivery alone cannot bring these.
    expect(await listeners()).toBe(0)

    await eventually(async () => expect(received).toEqual(['m1', 'm2', 'm3', 'm4']))
    await dispatcher.writeChannel('feed', 'm5', 100)
    await eventually(async () => expect(received).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']))
    expect(recoveries).toEqual([])
  })
})
