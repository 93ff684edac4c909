import { nanoid } from 'nanoid'
import { expect } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { eventually, nextEvent } from './harness.js'

/**
 * The tags of the `msg` events one client received, in arrival order. Tags are
 * `<sender>:<seq>:<anything>`, so that order per sender and duplicates can be checked.
 */
export class Inbox {
  tags: string[] = []

  constructor(client: MeshClient) {
    client.on<string>('msg', (tag) => this.tags.push(tag))
  }

  count(tag: string): number {
    return this.tags.filter((seen) => seen === tag).length
  }

  /** Forgets what arrived so far (between rounds, after a `settle`). */
  clear(): void {
    this.tags = []
  }

  /** Fails unless no tag arrived twice and each sender's sequence numbers only went up. */
  expectNoDuplicatesInOrder(label: string): void {
    expect(this.tags.length, `${label}: a message arrived twice (${this.tags.join(' ')})`).toBe(new Set(this.tags).size)
    const last = new Map<string, number>()
    for (const tag of this.tags) {
      const [sender, seq] = tag.split(':') as [string, string]
      const previous = last.get(sender) ?? -1
      expect(Number(seq), `${label}: ${tag} arrived after ${sender}:${previous}`).toBeGreaterThan(previous)
      last.set(sender, Number(seq))
    }
  }
}

/** Numbers each sender's messages, so receivers can check order. */
export class Tagger {
  private readonly next = new Map<string, number>()

  tag(sender: string, note = ''): string {
    const seq = this.next.get(sender) ?? 0
    this.next.set(sender, seq + 1)
    return `${sender}:${seq}:${note}`
  }
}

/**
 * Resolves once every client received a fence broadcast by each sender. One
 * sender's deliveries arrive in order, so whatever a sender addressed to a client
 * before its fence has arrived by then, and anything that has not never will.
 */
export async function settle(senders: readonly MeshServer[], clients: readonly MeshClient[], timeout = 5_000): Promise<void> {
  await Promise.all(
    senders.map(async (sender) => {
      const token = nanoid()
      const arrived = Promise.all(clients.map((client) => nextEvent(client, 'fence', timeout, (payload) => payload === token)))
      arrived.catch(() => {}) // awaited below, unless the broadcast itself failed first
      await sender.broadcast('fence', token)
      await arrived
    }),
  )
}

/**
 * Resolves once every instance is back on the bus after a Redis restart or a cut
 * connection (each reconnects after its own backoff): a fence from every sender
 * reaches every client. A fence sent before an instance resubscribed is lost, hence
 * the retries.
 */
export async function busUntilBack(senders: readonly MeshServer[], clients: readonly MeshClient[]): Promise<void> {
  await eventually(() => settle(senders, clients, 500))
}

/**
 * Resolves once a probe broadcast to `room` from every sender reaches every member,
 * retrying while the cluster recovers (a Redis restart, a cut connection).
 */
export async function probeUntilReached(room: string, senders: readonly MeshServer[], members: readonly MeshClient[]): Promise<void> {
  await eventually(async () => {
    const token = nanoid()
    const arrived = Promise.all(members.flatMap((member) => senders.map(() => nextEvent(member, 'probe', 500, (payload) => payload === token))))
    arrived.catch(() => {}) // awaited below, unless a broadcast failed first
    await Promise.all(senders.map((sender) => sender.broadcastRoom(room, 'probe', token)))
    await arrived
  })
}

/** A promise's outcome without throwing: for calls that may reject with `UNAVAILABLE` but must not hang or crash. */
export async function outcomeOf(promise: Promise<unknown>): Promise<{ ok: true } | { ok: false; code: unknown }> {
  try {
    await promise
    return { ok: true }
  } catch (error) {
    return { ok: false, code: (error as { code?: unknown }).code }
  }
}

/** One turn of the event loop, including I/O: lets a join or leave in flight make progress between broadcasts. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
