import { describe, expect, inject, it } from 'vitest'
import type { MeshClient, PresenceEvent } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, nextEvent, startServer } from './support/harness.js'
import { commandsDuring } from './support/redis-watch.js'

/** Two instances on the test Redis sharing a namespace, exposing "presence:…" rooms with presence. */
async function pair(namespace: string): Promise<[MeshServer, MeshServer]> {
  const start = (): Promise<MeshServer> =>
    startServer({ redis: inject('redisUrl'), namespace, presenceLeaveDelay: 0 }, (server) => server.exposeRoom(/^presence:/, undefined, { presence: true }))
  return [await start(), await start()]
}

/** Resolves once every client saw a presence event of `type` from `connectionId`. */
function seenByAll(clients: readonly MeshClient[], type: PresenceEvent['type'], connectionId: string): Promise<void> {
  const all = deferred()
  const seen = new Set<MeshClient>()
  const offs = clients.map((client) => client.on<PresenceEvent>('presence', (event) => {
    if (event.type !== type || event.connectionId !== connectionId) return
    seen.add(client)
    if (seen.size === clients.length) all.resolve()
  }))
  return all.promise.finally(() => offs.forEach((off) => off()))
}

describe('what presence costs in Redis', () => {
  it('an update and a leave run the same commands in a room of 3 and of 21, none reading the whole room', async () => {
    const namespace = uniqueNamespace('presence-costs')
    const [a, b] = await pair(namespace)
    const bySize = new Map<number, { update: string[]; leave: string[] }>()
    // Odd sizes: the actor's instance keeps members of the room (a last local leave would add an UNSUBSCRIBE).
    for (const size of [3, 21]) {
      const room = `presence:${size}`
      const members = await Promise.all(Array.from({ length: size }, (_, index) => connectClient(index % 2 === 0 ? a : b)))
      for (const member of members) expect(await member.joinRoom(room, { presence: { typing: false } })).toBe(true)
      const [actor, ...others] = members as [MeshClient, ...MeshClient[]]
      // Copied at once: a watch keeps recording until the test ends.
      const update = [...await commandsDuring(namespace, async () => {
        const seen = seenByAll(others, 'update', actor.id!)
        await actor.setPresence(room, { typing: true })
        await seen
      })]
      const leave = [...await commandsDuring(namespace, async () => {
        const seen = seenByAll(others, 'leave', actor.id!)
        expect(await actor.leaveRoom(room)).toBe(true)
        await seen
      })]
      bySize.set(size, { update: update.sort(), leave: leave.sort() })
    }
    const small = bySize.get(3)!
    const large = bySize.get(21)!
    expect(large.update).toEqual(small.update)
    expect(large.leave).toEqual(small.leave)
    // A leave used to read every member's entry (HGETALL) to announce one: O(members) per leave.
    for (const command of ['hgetall', 'hkeys', 'hvals', 'hscan', 'smembers', 'sscan']) {
      expect(large.update).not.toContain(command)
      expect(large.leave).not.toContain(command)
    }
  })

  it('a leave announces the state the member had', async () => {
    const namespace = uniqueNamespace('presence-costs')
    const [a, b] = await pair(namespace)
    const [leaver, watcher] = [await connectClient(a), await connectClient(b)]
    expect(await watcher.joinRoom('presence:state', { presence: { typing: false } })).toBe(true)
    expect(await leaver.joinRoom('presence:state', { presence: { typing: false } })).toBe(true)
    await leaver.setPresence('presence:state', { typing: true, name: 'ada' })
    const left = nextEvent<PresenceEvent>(watcher, 'presence', 5_000, (event) => event.type === 'leave')
    expect(await leaver.leaveRoom('presence:state')).toBe(true)
    expect(await left).toEqual({ room: 'presence:state', type: 'leave', connectionId: leaver.id, state: { typing: true, name: 'ada' } })
    expect(await a.getPresence('presence:state')).toEqual([{ connectionId: watcher.id, state: { typing: false } }])
  })
})
