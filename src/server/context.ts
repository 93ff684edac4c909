import type { Connection } from './connection.js'
import type { MeshServer } from './mesh-server.js'

/**
 * What middleware and handlers receive. Middleware may add fields for those after
 * it (`ctx.user = ...`); declare them once for type safety with
 * `declare module 'meshkit/server' { interface MeshContext { user?: User } }`.
 */
export interface MeshContext<P = unknown> {
  /** The command's name as the client sent it. */
  readonly command: string
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

/** Runs before a handler; throwing stops the chain and the client's `command()` rejects. */
export type Middleware = (ctx: MeshContext<any>) => void | Promise<void>

/** Answers a command; what it returns (or resolves to) is the client's reply. */
export type CommandHandler<P = any, R = unknown> = (ctx: MeshContext<P>) => R | Promise<R>
