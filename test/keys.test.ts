import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { Keys } from '../src/server/store/keys.js'

// The slot Redis Cluster gives a key (CRC16 of its hash tag), from the library ioredis itself uses.
const slotOf = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number

const keys = new Keys('ns')

/** Every key and bus topic of one entity: each group must live in one slot (its scripts touch them together, and publish on its topic). */
const entities = {
  connection: (id: string) => [keys.connection(id), keys.connectionRooms(id), keys.connectionPresence(id)],
  room: (name: string) => [keys.room(name), keys.presence(name), keys.roomTopic(name)],
  user: (id: string) => [keys.userConnections(id), keys.userPending(id), keys.userTopic(id)],
  channel: (name: string) => [keys.channelSequence(name), keys.channelBase(name), keys.channelHistory(name), keys.channelTopic(name)],
  instance: (id: string) => [keys.instance(id), keys.instanceConnections(id), keys.cleanupLock(id), keys.instanceTopic(id), keys.portalReplies(id)],
} as const

const namespaceKeys = [keys.instances, keys.usersOnline, keys.connectionIds, keys.broadcastTopic]
const portalKeys = [
  ...[0, 1, 7].map((partition) => keys.portalEvents(partition)),
  keys.portalCommands('g', 'cmd'),
  keys.portalLease('g', 3),
  keys.portalLiveness,
  keys.portalRegistry,
  keys.portalConfig,
  keys.portalRegistryChanges,
]

/** Names that break naive tags: braces (a "}" ends a tag early), empty, prototype names, unicode, separators. */
const awkward = ['plain', '', '__proto__', 'constructor', 'a}b', '}', '{', '{x}', 'x}:members', 'a:b', 'with space', 'ünï cödé 😀']

const slots = (list: readonly string[]): Set<number> => new Set(list.map(slotOf))

describe('Keys', () => {
  it('puts every key and topic of one entity in one slot, whatever its name', () => {
    for (const [kind, of] of Object.entries(entities)) {
      for (const name of awkward) expect(slots(of(name)).size, `${kind} "${name}"`).toBe(1)
    }
    expect(slots(namespaceKeys).size).toBe(1)
    expect(slots(portalKeys).size).toBe(1)
  })

  it('shows the namespace, the kind and the name in every key', () => {
    for (const [kind, of] of Object.entries(entities)) {
      for (const name of awkward) {
        for (const key of of(name)) {
          expect(key.startsWith('ns:')).toBe(true)
          const tag = kind === 'connection' ? 'conn' : kind === 'channel' ? 'chan' : kind === 'instance' ? 'inst' : kind
          expect(key).toContain(`{${tag}:${name}}`)
        }
      }
    }
    expect(keys.room('lobby')).toBe('ns:{room:lobby}:members')
    for (const key of [...namespaceKeys, ...portalKeys]) expect(key.startsWith('ns:{ns')).toBe(true)
  })

  it('never gives two entities, or two keys of one, the same name', () => {
    const all = [
      ...Object.values(entities).flatMap((of) => awkward.flatMap((name) => of(name))),
      ...namespaceKeys,
      ...portalKeys,
    ]
    expect(new Set(all).size).toBe(all.length)
  })

  it('spreads entities of one kind over the slots', () => {
    const rooms = Array.from({ length: 200 }, (_, index) => keys.room(`room-${index}`))
    // 200 names over 16384 slots: collisions are rare, one slot for all would be a broken tag.
    expect(slots(rooms).size).toBeGreaterThan(190)
    expect(slotOf(keys.room('a'))).not.toBe(slotOf(keys.userConnections('a')))
  })

  it('keeps namespaces apart in a key and in its slot', () => {
    const other = new Keys('other')
    expect(other.room('r')).not.toBe(keys.room('r'))
    expect(slotOf(other.instances)).not.toBe(slotOf(keys.instances))
    expect(() => new Keys('a{b}')).toThrow(RangeError)
  })
})
