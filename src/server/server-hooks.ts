import type { StoredMessage } from '../shared/message-log.js'
import type { Authentication } from './authentication.js'
import { isThenable } from './compose.js'
import type { Connection } from './connection.js'
import type { FrameCache } from './frame-cache.js'
import type { Logger } from './logger.js'
import type { SocketLifecycle } from './socket-lifecycle.js'

/** How a send addressed its recipients. */
export type SendTarget = 'connection' | 'connections' | 'room' | 'all' | 'users' | 'redelivery'

/** What `onMessageSent` receives: once per send on each instance, never once per recipient. */
export interface SentMessage extends StoredMessage {
  target: SendTarget
  /** The room of a room broadcast. */
  room?: string
  /** Connections of this instance it was written to (other instances report their own). */
  recipients: number
  /** It came from another instance or a Dispatcher (Mesa's `fromCurrentReplica`, negated). */
  relayed: boolean
}

/** Who a send could not reach (`onUndeliverableMessageSent`): named users with no connection, or connection ids no instance holds. */
export interface Undeliverable {
  userIds: string[]
  connectionIds: string[]
}

/** Where an error reported to `onError` came from. */
export interface HookErrorContext {
  /** The hook that threw or rejected. */
  hook?: keyof MeshHooks
  /** The command whose handler or middleware failed with a fault (not a `MeshError` refusal). */
  command?: string
  /** The type of the client message whose handler failed. */
  messageType?: string
  connection?: Connection
}

/**
 * Hooks into a server's life (Mesa's middleware), added with `server.use(hooks)`;
 * any may be left out, and each may be async. A hook that throws or rejects is
 * logged and reported to `onError`; it never reaches the server's own work.
 */
export interface MeshHooks {
  /** A connection received its hello. */
  onConnection?(connection: Connection): unknown
  /** An announced connection closed (1005 for a close frame with no code, 1006 for none). */
  onDisconnection?(connection: Connection, code: number, reason: string): unknown
  /** A connection was authenticated: by `client.authenticate()`, or at the upgrade (then right after `onConnection`). */
  onAuthenticated?(connection: Connection): unknown
  /** A client message (`client.send`) arrived, before middleware and handlers. */
  onMessageReceived?(connection: Connection, message: StoredMessage): unknown
  /** Events went out: `connection` is set for `connection.send` and redelivery, undefined for server-wide sends. */
  onMessageSent?(connection: Connection | undefined, message: SentMessage): unknown
  /** A send named someone it could not reach (see docs/api.md for exactly when). */
  onUndeliverableMessageSent?(message: StoredMessage, missing: Undeliverable): unknown
  /** A hook failed, or a command or message handler failed with a fault. */
  onError?(error: unknown, context: HookErrorContext): unknown
}

const hookNames: Record<keyof MeshHooks, true> = {
  onConnection: true,
  onDisconnection: true,
  onAuthenticated: true,
  onMessageReceived: true,
  onMessageSent: true,
  onUndeliverableMessageSent: true,
  onError: true,
}

type HookArgs<K extends keyof MeshHooks> = Parameters<NonNullable<MeshHooks[K]>>

/**
 * The hook sets of one server. Hot paths read `sending`, `receiving` and
 * `undeliverable` first: with no such hook, a delivery pays one property read.
 */
export class ServerHooks {
  /** Replaced, never changed in place: a hook that calls `use` or a remover does not disturb the loop that runs it. */
  private sets: readonly MeshHooks[] = []
  sending = false
  receiving = false
  undeliverable = false

  constructor(private readonly logger: Logger) {}

  /** Adds a set of hooks; returns the function that removes it. Unknown names and non-functions throw. */
  use(hooks: MeshHooks): () => void {
    if (typeof hooks !== 'object' || hooks === null) throw new TypeError('use() needs an object of hooks')
    for (const [name, hook] of Object.entries(hooks)) {
      if (!Object.prototype.hasOwnProperty.call(hookNames, name)) throw new TypeError(`Unknown hook "${name}"`)
      if (hook !== undefined && typeof hook !== 'function') throw new TypeError(`Hook ${name} must be a function`)
    }
    this.sets = [...this.sets, hooks]
    this.refresh()
    return () => {
      this.sets = this.sets.filter((set) => set !== hooks)
      this.refresh()
    }
  }

  /** Connections, disconnections and authentications reach the hooks through the server's own seams. */
  attach(sockets: SocketLifecycle, authentication: Authentication): void {
    sockets.onConnection((connection) => {
      this.run('onConnection', [connection], connection)
      if (connection.isAuthenticated) this.run('onAuthenticated', [connection], connection)
    })
    sockets.onDisconnection((connection) => this.run('onDisconnection', [connection, connection.closeCode ?? 1005, connection.closeReason ?? ''], connection))
    // Chained: the portal side uses the same seam.
    const previous = authentication.authenticated
    authentication.authenticated = (connection) => {
      previous?.(connection)
      this.run('onAuthenticated', [connection], connection)
    }
  }

  messageReceived(connection: Connection, type: string, data: unknown): void {
    this.run('onMessageReceived', [connection, { type, data }], connection)
  }

  messageSent(connection: Connection | undefined, message: SentMessage): void {
    this.run('onMessageSent', [connection, message], connection)
  }

  /** A send made on this instance: reported even when none of its connections got it. */
  sentHere(type: string, data: unknown, target: SendTarget, recipients: number, room?: string): void {
    const message: SentMessage = { type, data, target, recipients, relayed: false }
    if (room !== undefined) message.room = room
    this.messageSent(undefined, message)
  }

  /** A delivery from another instance: reported where it reached someone, its frame decoded once, and only for a hook. */
  sentRelayed(frames: FrameCache, target: SendTarget, recipients: number, room?: string): void {
    if (!this.sending || recipients === 0) return
    const message: SentMessage = { ...eventOf(frames), target, recipients, relayed: true }
    if (room !== undefined) message.room = room
    this.messageSent(undefined, message)
  }

  undeliverableSent(message: StoredMessage, missing: Undeliverable): void {
    this.run('onUndeliverableMessageSent', [message, missing])
  }

  /** Reports a fault to every `onError`; one that fails itself is only logged, so errors never loop. */
  error(error: unknown, context: HookErrorContext): void {
    this.run('onError', [error, context], context.connection)
  }

  private refresh(): void {
    this.sending = this.sets.some((set) => set.onMessageSent)
    this.receiving = this.sets.some((set) => set.onMessageReceived)
    this.undeliverable = this.sets.some((set) => set.onUndeliverableMessageSent)
  }

  private run<K extends keyof MeshHooks>(name: K, args: HookArgs<K>, connection?: Connection): void {
    for (const set of this.sets) {
      const hook = set[name] as ((...values: unknown[]) => unknown) | undefined
      if (hook === undefined) continue
      try {
        const result = hook.apply(set, args)
        if (isThenable(result)) result.then(undefined, (error: unknown) => this.failed(name, error, connection))
      } catch (error) {
        this.failed(name, error, connection)
      }
    }
  }

  private failed(hook: keyof MeshHooks, error: unknown, connection: Connection | undefined): void {
    this.logger.error?.(`${hook} hook failed`, { connectionId: connection?.id, error })
    if (hook !== 'onError') this.error(error, connection === undefined ? { hook } : { hook, connection })
  }
}

/** An event frame's name and data: `[4, event, payload, id?]`. */
export function eventOf(frames: FrameCache): StoredMessage {
  const frame = frames.decoded
  return { type: frame[1] as string, data: frame[2] }
}
