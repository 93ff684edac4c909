/*
 * Black-box tests of how deliveries find their recipients across instances, through
 * the public API only, whatever the routing does inside. The contract:
 *
 * 1. A room broadcast started after `addToRoom`/`joinRoom` resolved reaches the member
 *    exactly once, whichever instance broadcasts (also one that neither made the join
 *    nor holds the member) and whichever instance made the join.
 * 2. One started after `removeFromRoom`/`leaveRoom`/`removeFromAllRooms` resolved, or
 *    after the connection closed, does not reach it.
 * 3. Broadcasts racing a join or a leave reach the member at most once; nothing is ever
 *    duplicated; one sender's messages arrive in order.
 * 4. An instance holding no member of a room receives no bus traffic for it (measured as
 *    bytes Redis sends that instance, so topic names do not matter).
 * 5. An instance killed outright: survivors' broadcasts still reach surviving members
 *    exactly once without throwing; its members leave the room within the TTL bound.
 * 6. Redis restarted empty: once recovered, broadcasts from every instance reach every
 *    member exactly once; during the outage, a broadcast reaches the sender's own members.
 * 7. A client moving between instances receives, after its rejoin, broadcasts from
 *    every instance exactly once, and the instance it left holds nothing for it.
 * 8. `sendTo` from another instance reaches exactly that connection once; a closed or
 *    malformed id neither throws nor reaches anyone.
 * 9. User sends from another instance reach each connection of the user once; after a
 *    new session as another user they stop.
 *
 * 1–3 are here, 4 in room-isolation.test.ts, 5–7 in routing-faults.test.ts, 8–9 in
 * send-routing.test.ts.
 * "Nothing more arrives" is proved by a fence each sender broadcasts afterwards
 * (`settle`): one sender's deliveries arrive in order.
 */
import { describe, expect, it } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { startInstances } from './support/cluster.js'
import { connectClient, eventually, nextEvent } from './support/harness.js'
import { Inbox, nextTurn, settle, Tagger } from './support/routing.js'

type Three = [MeshServer, MeshServer, MeshServer]
const names = ['a', 'b', 'c'] as const

/** Three instances sharing the run's Redis; clients may join any room themselves. */
async function threeInstances(options: Parameters<typeof startInstances>[1] = {}): Promise<Three> {
  const servers = (await startInstances(3, options)) as Three
  for (const server of servers) server.exposeRoom(/^/)
  return servers
}

/** A join made by the client itself or by one of the instances, and a leave to match it. */
interface Membership {
  label: string
  join(): Promise<unknown>
  leave(): Promise<unknown>
}

/**
 * Every way of joining and leaving, for a member held by `servers[holder]`: by the
 * client, by its own instance, by another, by the third (which neither holds the
 * member nor made the join); leaves are made by yet another instance where possible.
 */
function memberships(servers: Three, holder: number, client: MeshClient, room: string): Membership[] {
  const own = servers[holder]!
  const next = servers[(holder + 1) % 3]!
  const third = servers[(holder + 2) % 3]!
  const id = (): string => client.id!
  return [
    { label: 'client joinRoom / leaveRoom', join: () => client.joinRoom(room), leave: () => client.leaveRoom(room) },
    { label: 'own addToRoom / next removeFromRoom', join: () => own.addToRoom(room, id()), leave: () => next.removeFromRoom(room, id()) },
    { label: 'next addToRoom / third removeFromAllRooms', join: () => next.addToRoom(room, id()), leave: () => third.removeFromAllRooms(id()) },
    { label: 'third addToRoom / own removeFromRoom', join: () => third.addToRoom(room, id()), leave: () => own.removeFromRoom(room, id()) },
  ]
}

describe('room broadcasts across instances', () => {
  it('reach a member exactly once from every instance, whoever made the join; never after the leave', async () => {
    const servers = await threeInstances()
    const members = await Promise.all(servers.map((server) => connectClient(server)))
    const bystanders = await Promise.all(servers.map((server) => connectClient(server)))
    const inboxes = new Map([...members, ...bystanders].map((client) => [client, new Inbox(client)]))
    const tagger = new Tagger()
    for (const [holder, member] of members.entries()) {
      for (const way of memberships(servers, holder, member, 'lobby')) {
        const label = `member on ${names[holder]}, ${way.label}`
        await way.join()
        const inside = servers.map((_, index) => tagger.tag(names[index]!, 'in'))
        await Promise.all(servers.map((server, index) => server.broadcastRoom('lobby', 'msg', inside[index])))
        await way.leave()
        const outside = servers.map((_, index) => tagger.tag(names[index]!, 'out'))
        await Promise.all(servers.map((server, index) => server.broadcastRoom('lobby', 'msg', outside[index])))
        await settle(servers, [...inboxes.keys()])
        for (const [client, inbox] of inboxes) {
          inbox.expectNoDuplicatesInOrder(label)
          expect(inbox.tags.sort(), label).toEqual(client === member ? [...inside].sort() : [])
          inbox.clear()
        }
      }
    }
  })

  it('stop reaching a connection once it closed, also its next connection on the same instance', async () => {
    const servers = await threeInstances()
    const [a, b, c] = servers
    const member = await connectClient(b, { reconnectInterval: 10 })
    const witness = await connectClient(b)
    await c.addToRoom('lobby', member.id!)
    await a.addToRoom('lobby', witness.id!)
    const oldId = member.id!
    const inbox = new Inbox(member)
    const witnessInbox = new Inbox(witness)

    // Closed by its server with 1012, the client reconnects to b with a new id that joined nothing.
    const reconnected = nextEvent(member, 'connect')
    b.connections.get(oldId)!.close(1012)
    await reconnected
    expect(member.id).not.toBe(oldId)
    const tagger = new Tagger()
    const broadcastFromAll = async (): Promise<string[]> => {
      const sent = servers.map((_, index) => tagger.tag(names[index]!))
      await Promise.all(servers.map((server, index) => server.broadcastRoom('lobby', 'msg', sent[index])))
      await settle(servers, [member, witness])
      return sent
    }
    // At once, whether or not every instance has heard of the close yet; and after the store forgot it.
    const early = await broadcastFromAll()
    await eventually(async () => expect(await a.getRoomMembers('lobby')).toEqual([witness.id]))
    const late = await broadcastFromAll()
    expect(inbox.tags).toEqual([])
    expect(witnessInbox.tags.sort()).toEqual([...early, ...late].sort())
    witnessInbox.expectNoDuplicatesInOrder('witness')
  })

  it('racing joins and leaves: exactly once while a member, never after leaving, at most once in between, in order (50 rounds)', { timeout: 30_000 }, async () => {
    const servers = await threeInstances()
    const anchor = await connectClient(servers[0])
    await servers[1].addToRoom('race', anchor.id!)
    const subjects = await Promise.all(servers.map((server) => connectClient(server)))
    const anchorInbox = new Inbox(anchor)
    const inboxes = subjects.map((subject) => new Inbox(subject))
    const tagger = new Tagger()

    for (let round = 0; round < 50; round++) {
      const holder = round % 3
      const subject = subjects[holder]!
      const way = memberships(servers, holder, subject, 'race')[Math.floor(round / 3) % 4]!
      const label = `round ${round}, member on ${names[holder]}, ${way.label}`
      const sent: Array<{ tag: string; phase: 'joining' | 'member' | 'leaving' | 'gone' }> = []
      const pending: Promise<void>[] = []
      const fire = (phase: (typeof sent)[number]['phase']): void => {
        servers.forEach((server, index) => {
          const tag = tagger.tag(names[index]!, `${round}-${phase}`)
          sent.push({ tag, phase })
          pending.push(server.broadcastRoom('race', 'msg', tag))
        })
      }
      // Broadcasts from all three, every turn of the event loop, while the join runs.
      let settled = false
      const joined = way.join().finally(() => (settled = true))
      for (let turn = 0; !settled && turn < 40; turn++) {
        fire('joining')
        await nextTurn()
      }
      await joined
      // A broadcast still running when the leave starts races the leave: only those
      // that resolved before it must arrive.
      const before = pending.length
      fire('member')
      await Promise.all(pending.slice(before))
      settled = false
      const left = way.leave().finally(() => (settled = true))
      for (let turn = 0; !settled && turn < 40; turn++) {
        fire('leaving')
        await nextTurn()
      }
      await left
      fire('gone')
      await Promise.all(pending)
      await settle(servers, [anchor, subject])

      const inbox = inboxes[holder]!
      inbox.expectNoDuplicatesInOrder(label)
      anchorInbox.expectNoDuplicatesInOrder(label)
      expect(anchorInbox.tags.sort(), label).toEqual(sent.map(({ tag }) => tag).sort())
      for (const { tag, phase } of sent) {
        if (phase === 'member') expect(inbox.count(tag), `${label}: ${tag}`).toBe(1)
        if (phase === 'gone') expect(inbox.count(tag), `${label}: ${tag}`).toBe(0)
      }
      inbox.clear()
      anchorInbox.clear()
    }
  })

  it('handing an instance\'s only membership from one connection to another, at once or one right after the other: the new member gets everything (30 rounds)', { timeout: 30_000 }, async () => {
    const servers = await threeInstances()
    const [a, b, c] = servers
    // b holds one member at a time; a and c broadcast throughout.
    const pair = [await connectClient(b), await connectClient(b)] as const
    const inboxes = pair.map((client) => new Inbox(client))
    const tagger = new Tagger()
    await a.addToRoom('handover', pair[0].id!)
    for (let round = 0; round < 30; round++) {
      const [current, next] = round % 2 === 0 ? [pair[0], pair[1]] : [pair[1], pair[0]]
      const [joiner, leaver] = [servers[round % 3]!, servers[(round + 1) % 3]!]
      const label = `round ${round}, join by ${names[round % 3]}, ${round % 4 < 2 ? 'concurrent' : 'leave first'}`
      const racing = [a, c].map((sender) => sender.broadcastRoom('handover', 'msg', tagger.tag(sender === a ? 'a' : 'c', `${round}-racing`)))
      if (round % 4 < 2) {
        await Promise.all([joiner.addToRoom('handover', next.id!), leaver.removeFromRoom('handover', current.id!)])
      } else {
        await leaver.removeFromRoom('handover', current.id!)
        await joiner.addToRoom('handover', next.id!)
      }
      await Promise.all(racing)
      const after = [a, c].map((sender) => tagger.tag(sender === a ? 'a' : 'c', `${round}-after`))
      await Promise.all(after.map((tag, index) => [a, c][index]!.broadcastRoom('handover', 'msg', tag)))
      await settle([a, c], pair)
      const [nextInbox, currentInbox] = next === pair[0] ? [inboxes[0]!, inboxes[1]!] : [inboxes[1]!, inboxes[0]!]
      for (const inbox of inboxes) inbox.expectNoDuplicatesInOrder(label)
      for (const tag of after) {
        expect(nextInbox.count(tag), `${label}: ${tag}`).toBe(1)
        expect(currentInbox.count(tag), `${label}: ${tag}`).toBe(0)
      }
      for (const inbox of inboxes) inbox.clear()
    }
  })
})
