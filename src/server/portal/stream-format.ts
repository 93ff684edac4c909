import { msgpackCodec } from '../../shared/msgpack-codec.js'
import type { Handshake } from '../handshake.js'

/**
 * The portal stream format, shared by the servers that write entries and the
 * portals that read them, and documented in docs/protocol.md for workers written in
 * other languages. An entry is a Redis stream entry with flat string fields (`v`,
 * `kind`, `connection`, `instance`) and one msgpack `body`; a reply to a forwarded
 * command is a msgpack array published on the owning instance's reply topic.
 */
export const STREAM_FORMAT_VERSION = '1'

/** Partitions of the event streams when the servers' `portal.partitions` is not set. */
export const DEFAULT_PARTITIONS = 16

export const EntryKind = {
  CONNECTION: 'connection',
  AUTHENTICATION: 'authentication',
  MESSAGE: 'message',
  DISCONNECTION: 'disconnection',
  COMMAND: 'command',
} as const
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind]

const KINDS: ReadonlySet<string> = new Set(Object.values(EntryKind))

/** What every body carries: who the connection is, as the owning instance knew it when it wrote the entry. */
export interface EntryIdentity {
  userId?: string
  user?: unknown
}

export interface ConnectionBody extends EntryIdentity {
  handshake: Handshake
}
export interface MessageBody extends EntryIdentity {
  type: string
  data?: unknown
}
export interface DisconnectionBody extends EntryIdentity {
  code: number
  reason: string
}
export interface CommandBody extends EntryIdentity {
  name: string
  payload?: unknown
  /** Names the waiting request on the owning instance; echoed in the reply. */
  token: string
  /** Milliseconds since the epoch (the instance's clock) after which nobody waits for the reply. */
  deadline: number
}

export type EntryBody = EntryIdentity | ConnectionBody | MessageBody | DisconnectionBody | CommandBody

/** One decoded stream entry. */
export interface PortalEntry {
  /** The stream entry id (`<ms>-<seq>`). */
  id: string
  kind: EntryKind
  connectionId: string
  instanceId: string
  body: EntryBody
}

/** The field/value list of `XADD key * ...` for one entry. */
export function entryFields(kind: EntryKind, connectionId: string, instanceId: string, body: EntryBody): (string | Buffer)[] {
  const bytes = msgpackCodec.encode(body) as Uint8Array
  return ['v', STREAM_FORMAT_VERSION, 'kind', kind, 'connection', connectionId, 'instance', instanceId, 'body', Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]
}

/**
 * One entry as `XREADGROUP`/`XAUTOCLAIM` return it with a Buffer reply
 * (`[id, [field, value, ...]]`); `undefined` for anything malformed or of another
 * format version, which the reader acknowledges and logs rather than retries forever.
 */
export function decodeEntry(id: string, fields: readonly Buffer[] | null): PortalEntry | undefined {
  if (!Array.isArray(fields)) return undefined
  const values = new Map<string, Buffer>()
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!.toString(), fields[i + 1]!)
  if (values.get('v')?.toString() !== STREAM_FORMAT_VERSION) return undefined
  const kind = values.get('kind')?.toString()
  const connectionId = values.get('connection')?.toString()
  const instanceId = values.get('instance')?.toString()
  const raw = values.get('body')
  if (kind === undefined || !KINDS.has(kind) || !connectionId || !instanceId || raw === undefined) return undefined
  let body: unknown
  try {
    body = msgpackCodec.decode(raw)
  } catch {
    return undefined
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  return { id, kind: kind as EntryKind, connectionId, instanceId, body: body as EntryBody }
}

/** A forwarded command's reply: `[token, 1, result]` or `[token, 0, code, message, data?]`. */
export type CommandReply = [token: string, ok: 1, result: unknown] | [token: string, ok: 0, code: string, message: string, data?: unknown]

export function encodeReply(reply: CommandReply): Uint8Array {
  return msgpackCodec.encode(reply) as Uint8Array
}

/** `undefined` for a reply that is not one (another writer on the topic, a newer format). */
export function decodeReply(bytes: Uint8Array): CommandReply | undefined {
  let reply: unknown
  try {
    reply = msgpackCodec.decode(bytes)
  } catch {
    return undefined
  }
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') return undefined
  if (reply[1] === 1 && reply.length === 3) return reply as CommandReply
  if (reply[1] === 0 && typeof reply[2] === 'string' && typeof reply[3] === 'string') return reply as CommandReply
  return undefined
}

/** A portal's announcement in the registry hash (JSON, so that any language reads it). */
export interface Announcement {
  group: string
  /** Commands this portal handles (`portal.registerCommand`). */
  commands: string[]
  /** Milliseconds since the epoch (Redis time) when the portal started: the oldest live one is a group's active portal without `distributeLoad`. */
  since: number
}

export function parseAnnouncement(json: string | null | undefined): Announcement | undefined {
  if (!json) return undefined
  try {
    const value = JSON.parse(json) as Partial<Announcement>
    if (typeof value.group !== 'string' || !Array.isArray(value.commands) || typeof value.since !== 'number') return undefined
    return { group: value.group, commands: value.commands.filter((name): name is string => typeof name === 'string'), since: value.since }
  } catch {
    return undefined
  }
}

/**
 * The partition a connection's events go to: FNV-1a (32 bits) of the id's UTF-8
 * bytes, modulo the partition count. Only servers compute it; it is documented so
 * that every server version agrees.
 */
export function partitionOf(connectionId: string, partitions: number): number {
  return fnv1a(connectionId) % partitions
}

/**
 * FNV-1a, 32 bits, of a string's UTF-8 bytes: the partition hash, and the start of
 * the portals' rendezvous score. Runs for every event a server writes: an ASCII
 * string (every connection id) is its own UTF-8, so only others are encoded first.
 */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code >= 0x80) return fnv1aBytes(Buffer.from(text, 'utf8'))
    hash = Math.imul(hash ^ code, 0x01000193) >>> 0
  }
  return hash
}

function fnv1aBytes(bytes: Uint8Array): number {
  let hash = 0x811c9dc5
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0
  return hash
}
