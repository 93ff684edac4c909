/*
 * Rooms reach their own members and the instances holding them, nothing else
 * (contract in room-delivery.test.ts, 4): room names that look like patterns or
 * prefixes of each other stay apart, exclusions hold on every instance, and an
 * instance holding no member receives no bytes for the room, measured by a relay
 * in front of Redis, so topic names do not matter.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { countingProxy } from './support/counting-proxy.js'
import { connectClient, eventually } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'
import { Inbox, settle, Tagger } from './support/routing.js'

type Three = [MeshServer, MeshServer, MeshServer]

describe('rooms apart', () => {
  it('rooms whose names look like patterns, prefixes or separators reach their own members only, from every instance', async () => {
    const servers = (await startInstances(3)) as Three
    const rooms = ['x', 'x*', '*', 'x?', 'x[ab]', 'xa', 'x:y', 'x:', ':y', 'x\\', 'x y', 'ünï', '{x}', 'x.y', 'bus', 'room:x']
    // One member per room, spread over the instances, each added by another instance than its own.
    const members = await Promise.all(rooms.map((_, index) => connectClient(servers[index % 3]!)))
    for (const [index, room] of rooms.entries()) await servers[(index + 1) % 3]!.addToRoom(room, members[index]!.id!)
    const inboxes = members.map((member) => new Inbox(member))
    const tagger = new Tagger()
    const sent = rooms.map((room) => servers.map((_, index) => tagger.tag(`s${index}`, room)))
    for (const [index, room] of rooms.entries()) {
      await Promise.all(servers.map((server, sender) => server.broadcastRoom(room, 'msg', sent[index]![sender])))
    }
    await settle(servers, members)
    for (const [index, inbox] of inboxes.entries()) {
      inbox.expectNoDuplicatesInOrder(rooms[index]!)
      expect(inbox.tags.sort(), rooms[index]).toEqual([...sent[index]!].sort())
    }
  })

  it('broadcastRoomExclude skips the excluded members wherever they are, from every instance', async () => {
    const servers = (await startInstances(3)) as Three
    const members = await Promise.all([0, 0, 1, 1, 2, 2].map((index) => connectClient(servers[index]!)))
    for (const member of members) await servers[0].addToRoom('lobby', member.id!)
    const inboxes = members.map((member) => new Inbox(member))
    const tagger = new Tagger()
    const expected: string[][] = members.map(() => [])
    // Each sender leaves out one member on each instance.
    for (const [index, server] of servers.entries()) {
      const excluded = [0, 2, 4].map((first) => first + ((index + first) % 2))
      const tag = tagger.tag(`s${index}`)
      for (const member of members.keys()) if (!excluded.includes(member)) expected[member]!.push(tag)
      await server.broadcastRoomExclude('lobby', 'msg', tag, excluded.map((member) => members[member]!.id!))
    }
    await settle(servers, members)
    inboxes.forEach((inbox, index) => {
      inbox.expectNoDuplicatesInOrder(`member ${index}`)
      expect(inbox.tags.sort(), `member ${index}`).toEqual(expected[index]!.sort())
    })
  })
})

describe('bus traffic for rooms', () => {
  /** 40 broadcasts of 1 KB from `sender` to `room`, then a fence, so all of it has reached every instance. */
  async function burst(sender: MeshServer, room: string, fenced: MeshClient[]): Promise<void> {
    const payload = 'x'.repeat(1_024)
    await Promise.all(Array.from({ length: 40 }, () => sender.broadcastRoom(room, 'bulk', payload)))
    await settle([sender], fenced)
  }

  it('reaches only instances holding members: none while an instance has none, also after its member left or closed', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('quiet')
    const toB = await countingProxy(redis.url)
    const toC = await countingProxy(redis.url)
    // b and c reach Redis through relays that count what Redis sends them.
    const [a] = (await startInstances(1, { redis: redis.url, namespace })) as [MeshServer]
    const [b] = (await startInstances(1, { redis: toB.url, namespace })) as [MeshServer]
    const [c] = (await startInstances(1, { redis: toC.url, namespace })) as [MeshServer]
    const onA = await connectClient(a)
    const onB = await connectClient(b)
    const onC = await connectClient(c)
    const all = [onA, onB, onC]
    await a.addToRoom('quiet', onA.id!)
    await a.addToRoom('quiet', onB.id!)
    await c.addToRoom('elsewhere', onC.id!) // c holds members of another room
    const bulk = (client: MeshClient): string[] => {
      const seen: string[] = []
      client.on<string>('bulk', (payload) => seen.push(payload))
      return seen
    }
    const [bulkA, bulkB, bulkC] = all.map(bulk) as [string[], string[], string[]]

    const measure = async (sender: MeshServer): Promise<{ b: number; c: number }> => {
      const before = { b: toB.received, c: toC.received }
      await burst(sender, 'quiet', all)
      return { b: toB.received - before.b, c: toC.received - before.c }
    }
    const fromA = await measure(a)
    expect(fromA.b).toBeGreaterThan(40 * 1_024) // the relay sees what b needs
    expect(fromA.c).toBeLessThan(8 * 1_024) // c needs none of it: at most fences and housekeeping
    expect([bulkA.length, bulkB.length, bulkC.length]).toEqual([40, 40, 0])

    // c gains a member: now it receives; the member leaves: it stops (allowing for an unsubscribe in flight).
    await b.addToRoom('quiet', onC.id!)
    expect((await measure(b)).c).toBeGreaterThan(40 * 1_024)
    await a.removeFromRoom('quiet', onC.id!)
    await eventually(async () => expect((await measure(a)).c).toBeLessThan(8 * 1_024))
    // Again, with the member closing instead of leaving.
    const second = await connectClient(c)
    await a.addToRoom('quiet', second.id!)
    expect((await measure(b)).c).toBeGreaterThan(40 * 1_024)
    await second.close()
    await eventually(async () => expect((await measure(a)).c).toBeLessThan(8 * 1_024))
    expect(bulkC).toHaveLength(40)
  })
})
