import type { Connection } from './connection.js'
import type { MeshServer } from './mesh-server.js'

/**
 * What middleware and handlers receive. Middleware may add fields for those after
 * it (`ctx.user = ...`); declare them once for type safety with
 * `declare module 'meshkit/server' { interface MeshContext { user?: User } }`.
 */
export interface MeshContext<P = unknown> {
  /**
   * The command's name as the client sent it. `undefined` (despite the type, kept
   * `string` so that command handlers need no check) while global middleware runs
   * for a client message: test `ctx.message` first in global middleware.
   */
  readonly command: string
  /** Set to the message's type when global middleware runs for a client message (`client.send`); `undefined` for commands. */
  readonly message?: string
  /** The payload the client sent (middleware may replace it, for example after validation). */
  payload: P
  /** The connection the request came on. */
  readonly connection: Connection
  /** The server handling the request. */
  readonly server: MeshServer
  /**
   * Aborts when the connection closes (reason: a `MeshError` with code
   * `CONNECTION_CLOSED`); pass it to whatever the handler waits on, so that work for
   * a client that is gone stops and its memory is freed. One per connection, made on
   * first read.
   */
  readonly signal: AbortSignal
  [field: string]: unknown
}

/**
 * The context object of one request. A class, not a literal: `signal` is a getter
 * on the prototype, so a request costs one object whether or not anyone reads it.
 */
export class RequestContext<P = unknown> implements MeshContext<P> {
  [field: string]: unknown
  constructor(
    readonly command: string,
    public payload: P,
    readonly connection: Connection,
    readonly server: MeshServer,
  ) {}

  get signal(): AbortSignal {
    return this.connection.signal
  }
}

/**
 * What `server.onMessage` handlers (and global middleware, for a message) receive.
 * `payload` is the same value as `data`, so that middleware validating payloads
 * works on both; replacing either replaces both.
 */
export class MessageContext<D = unknown> {
  [field: string]: unknown
  /** Always `undefined`: this is a message, not a command. */
  readonly command: undefined = undefined
  constructor(
    /** The message's type as the client sent it (also `ctx.message`). */
    readonly type: string,
    /** What the client sent with it (`undefined` if nothing). */
    public data: D,
    /** The connection the message came on. */
    readonly connection: Connection,
    readonly server: MeshServer,
  ) {}

  get message(): string {
    return this.type
  }

  get payload(): D {
    return this.data
  }

  set payload(value: D) {
    this.data = value
  }

  /** Aborts when the connection closes; see `MeshContext.signal`. */
  get signal(): AbortSignal {
    return this.connection.signal
  }
}

/** Handles a client message; what it returns is ignored (a rejection is logged). */
export type MessageHandler<D = any> = (ctx: MessageContext<D>) => unknown

/** Runs before a handler; throwing stops the chain and the client's `command()` rejects. */
export type Middleware = (ctx: MeshContext<any>) => void | Promise<void>

/** Answers a command; what it returns (or resolves to) is the client's reply. */
export type CommandHandler<P = any, R = unknown> = (ctx: MeshContext<P>) => R | Promise<R>
