import type { Handshake } from '../handshake.js'
import type { Portal } from './portal.js'
import { EntryKind, type CommandBody, type ConnectionBody, type DisconnectionBody, type MessageBody, type PortalEntry } from './stream-format.js'

/** The client connection an entry is about, as its owning instance knew it when it wrote the entry. */
export interface PortalConnection {
  /** The connection's id (the same as `connection.id` on the server). */
  readonly id: string
  /** The instance that holds the connection. */
  readonly instanceId: string
  /** The authenticated user's id, if any. */
  readonly userId: string | undefined
  /** The authenticated user, if any. */
  readonly user: unknown
  /** The upgrade request's headers, query and address: only on `connection` events. */
  readonly handshake: Handshake | undefined
  /** Sends an event to this one connection, wherever it is (a Dispatcher `sendTo`). */
  send(event: string, payload?: unknown): Promise<void>
}

/** What every portal handler receives; fields beyond these may be added by the application. */
export interface PortalContext<D = unknown> {
  /**
   * Stable across redeliveries and the same in every group, for dropping repeats:
   * `<partition>:<entry id>` for events, the command stream's entry id for commands.
   */
  readonly eventId: string
  readonly kind: EntryKind
  readonly connection: PortalConnection
  /** The message's type (`message` events). */
  readonly type?: string
  /** What the client sent with the message (`message` events). */
  readonly data?: D
  /** The WebSocket close code (`disconnection` events; 1005 when none was given). */
  readonly code?: number
  /** The WebSocket close reason (`disconnection` events). */
  readonly reason?: string
  /** The portal handling the event, for its delivery API. */
  readonly portal: Portal
  [field: string]: unknown
}

/** What a portal command's middleware and handler receive. */
export interface PortalCommandContext<P = unknown> extends PortalContext {
  /** The command's name as the client sent it. */
  readonly command: string
  /** The client's payload (middleware may replace it, for example after validation). */
  payload: P
  /** Milliseconds since the epoch (the owning instance's clock) after which nobody waits for the reply. */
  readonly deadline: number
}

/** Handles one event; awaited before the entry is acknowledged. A throw is logged and counted, and the entry is still acknowledged. */
export type PortalHandler<D = any> = (ctx: PortalContext<D>) => unknown

/** Answers a forwarded command: what it returns (or resolves to) is the client's reply. */
export type PortalCommandHandler<P = any, R = unknown> = (ctx: PortalCommandContext<P>) => R | Promise<R>

/** Runs before a portal command's handler; throwing stops the chain and the client's `command()` rejects. */
export type PortalMiddleware = (ctx: PortalCommandContext<any>) => void | Promise<void>

/** Builds contexts for one portal; `send` goes through the portal's delivery API. */
export function contextOf(portal: Portal, entry: PortalEntry, eventId: string): PortalContext | PortalCommandContext {
  const body = entry.body
  const connection: PortalConnection = {
    id: entry.connectionId,
    instanceId: entry.instanceId,
    userId: typeof body.userId === 'string' ? body.userId : undefined,
    user: body.user,
    handshake: entry.kind === EntryKind.CONNECTION ? (body as ConnectionBody).handshake : undefined,
    send: (event, payload) => portal.sendTo([entry.connectionId], event, payload),
  }
  const ctx: Record<string, unknown> = { eventId, kind: entry.kind, connection, portal }
  switch (entry.kind) {
    case EntryKind.MESSAGE: {
      const message = body as MessageBody
      ctx.type = message.type
      ctx.data = message.data
      break
    }
    case EntryKind.DISCONNECTION: {
      const closed = body as DisconnectionBody
      ctx.code = closed.code
      ctx.reason = closed.reason
      break
    }
    case EntryKind.COMMAND: {
      const command = body as CommandBody
      ctx.command = command.name
      ctx.payload = command.payload
      ctx.deadline = command.deadline
      break
    }
  }
  return ctx as unknown as PortalContext | PortalCommandContext
}

/**
 * Whether a command entry's body has what a reply needs (a token to answer and a
 * deadline); one without is malformed and skipped like any other.
 */
export function isCommandBody(body: unknown): body is CommandBody {
  const command = body as Partial<CommandBody>
  return typeof command.name === 'string' && typeof command.token === 'string' && typeof command.deadline === 'number'
}

/** Whether a message or disconnection body has its fields (other kinds need none beyond the identity). */
export function hasEventFields(entry: PortalEntry): boolean {
  if (entry.kind === EntryKind.MESSAGE) return typeof (entry.body as MessageBody).type === 'string'
  if (entry.kind === EntryKind.DISCONNECTION) {
    const closed = entry.body as DisconnectionBody
    return typeof closed.code === 'number' && typeof closed.reason === 'string'
  }
  return entry.kind !== EntryKind.COMMAND
}
