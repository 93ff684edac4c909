import { Redis } from 'ioredis'
import { expect, inject, onTestFinished } from 'vitest'
import { Portal, type PortalContext, type PortalOptions } from 'meshkit/server'
import { Keys } from '../../src/server/store/keys.js'
import { decodeReply, entryFields, EntryKind, partitionOf, type CommandReply, type EntryBody } from '../../src/server/portal/stream-format.js'
import { eventually } from './harness.js'

/**
 * Helpers for testing portals without a server: a fake server writes entries into
 * the streams as a real one would (the contract in stream-format.ts) and reads what
 * portals leave in Redis.
 */
export const TTL = 600
export const INSTANCE = 'instance-1'

/** Plays the servers' role: writes entries as they would, and reads what portals leave in Redis. */
export function fakeServer(namespace: string) {
  const redis = new Redis(inject('redisUrl'))
  onTestFinished(() => void redis.quit())
  const keys = new Keys(namespace)
  return {
    redis,
    keys,
    async event(kind: EntryKind, connection: string, body: EntryBody = {}): Promise<string> {
      return (await redis.xadd(keys.portalEvents(partitionOf(connection, 16)), '*', ...entryFields(kind, connection, INSTANCE, body))) as string
    },
    async command(group: string, name: string, body: Record<string, unknown>): Promise<string> {
      const full = { name, token: `t-${Math.random()}`, deadline: Date.now() + 10_000, ...body } as EntryBody
      return (await redis.xadd(keys.portalCommands(group, name), '*', ...entryFields(EntryKind.COMMAND, 'conn-1', INSTANCE, full))) as string
    },
    /** Entries read by a group and not acknowledged, over every partition. */
    async pending(group: string): Promise<number> {
      let total = 0
      for (let p = 0; p < 16; p++) total += Number(((await redis.xpending(keys.portalEvents(p), group)) as [number])[0])
      return total
    },
  }
}

export function portalFor(redis: string, options: PortalOptions): Portal {
  const portal = new Portal(redis, { ttl: TTL, ...options })
  onTestFinished(() => portal.close())
  return portal
}

/** Records every event a portal handles, as `<connection>:<kind>[:<type>]`. */
export function record(portal: Portal, into: string[] = []): string[] {
  const note = (ctx: PortalContext): void => void into.push(`${ctx.connection.id}:${ctx.kind}${ctx.type === undefined ? '' : `:${ctx.type}`}`)
  portal.onConnection(note)
  portal.onAuthentication(note)
  portal.onMessage('*', note)
  portal.onDisconnection(note)
  return into
}

/** Connection ids whose events land in different partitions. */
export function connectionIds(count: number): string[] {
  const ids: string[] = []
  const used = new Set<number>()
  for (let i = 0; ids.length < count; i++) {
    const p = partitionOf(`c${i}`, 16)
    if (count <= 16 && used.has(p)) continue
    used.add(p)
    ids.push(`c${i}`)
  }
  return ids
}

/** Every connection's life: connect, authenticate, `messages` messages, disconnect; interleaved across connections. */
export async function writeLives(server: FakeServer, ids: readonly string[], messages: number): Promise<Map<string, string[]>> {
  const expected = new Map<string, string[]>(ids.map((id) => [id, []]))
  const steps: Array<[EntryKind, EntryBody, string]> = [[EntryKind.CONNECTION, { handshake: { headers: {}, query: {}, address: '127.0.0.1' } }, 'connection']]
  steps.push([EntryKind.AUTHENTICATION, { userId: 'u1', user: { id: 'u1' } }, 'authentication'])
  for (let m = 0; m < messages; m++) steps.push([EntryKind.MESSAGE, { userId: 'u1', type: `m${m}`, data: m }, `message:m${m}`])
  steps.push([EntryKind.DISCONNECTION, { code: 1000, reason: 'bye' }, 'disconnection'])
  for (const [kind, body, label] of steps) {
    for (const id of ids) {
      await server.event(kind, id, body)
      expected.get(id)!.push(`${id}:${label}`)
    }
  }
  return expected
}

export function byConnection(handled: readonly string[]): Map<string, string[]> {
  const grouped = new Map<string, string[]>()
  for (const line of handled) {
    const id = line.split(':')[0]!
    grouped.set(id, [...(grouped.get(id) ?? []), line])
  }
  return grouped
}

/** Waits until the portals of a group hold every partition between them, each at least one. */
export async function untilSplit(server: FakeServer, group: string, portals: readonly Portal[]): Promise<void> {
  await eventually(async () => {
    const holders = await Promise.all(Array.from({ length: 16 }, (_, p) => server.redis.get(server.keys.portalLease(group, p))))
    for (const portal of portals) expect(holders).toContain(portal.id)
    expect(holders.every((holder) => portals.some((portal) => portal.id === holder))).toBe(true)
  })
}

/** Subscribes to an instance's reply topic as a server would, collecting decoded replies. */
export async function replies(namespace: string, instance = INSTANCE): Promise<CommandReply[]> {
  const subscriber = new Redis(inject('redisUrl'))
  onTestFinished(() => void subscriber.quit())
  const received: CommandReply[] = []
  subscriber.on('messageBuffer', (_topic: Buffer, message: Buffer) => received.push(decodeReply(message)!))
  await subscriber.subscribe(new Keys(namespace).portalReplies(instance))
  return received
}

/** Each connection's event ids in the order first handled, repeats (at-least-once redeliveries) left out. */
export function handledOnce(seen: readonly PortalContext[], ids: readonly string[]): Map<string, string[]> {
  const byId = new Map<string, string[]>(ids.map((id) => [id, []]))
  for (const ctx of seen) {
    const list = byId.get(ctx.connection.id)!
    if (!list.includes(ctx.eventId)) list.push(ctx.eventId)
  }
  return byId
}

export type FakeServer = ReturnType<typeof fakeServer>
