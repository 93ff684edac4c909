import type { ApiShape, UntypedApi } from '../shared/api.js'
import type { Connection } from './connection.js'
import type { MeshServer } from './mesh-server.js'
import type { NoFields } from './typed-api.js'

/**
 * What middleware and command handlers receive. It has no index signature, so that a
 * mistyped field is a compile error. Fields that middleware adds are typed by the
 * middleware (`Middleware<{ user: User }>`, see `registerCommand` and `addMiddleware`),
 * or once for every context by declaration merging:
 * `declare module 'meshkit/server' { interface MeshContext { user?: User } }`.
 */
export interface MeshContext<P = unknown, Api extends ApiShape = UntypedApi> {
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
  readonly connection: Connection<Api>
  /** The server handling the request. */
  readonly server: MeshServer<Api>
  /**
   * Aborts when the connection closes (reason: a `MeshError` with code
   * `CONNECTION_CLOSED`); pass it to whatever the handler waits on, so that work for
   * a client that is gone stops and its memory is freed. One per connection, made on
   * first read.
   */
  readonly signal: AbortSignal
}

/**
 * The context object of one request. A class, not a literal: `signal` is a getter
 * on the prototype, so a request costs one object whether or not anyone reads it.
 * Middleware adds its fields to this object at run time; only their types live
 * elsewhere (`Middleware<Fields>`, declaration merging).
 */
export class RequestContext<P = unknown, Api extends ApiShape = UntypedApi> implements MeshContext<P, Api> {
  constructor(
    readonly command: string,
    public payload: P,
    readonly connection: Connection<Api>,
    readonly server: MeshServer<Api>,
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
export class MessageContext<D = unknown, Api extends ApiShape = UntypedApi> {
  /** Always `undefined`: this is a message, not a command. */
  readonly command: undefined = undefined
  constructor(
    /** The message's type as the client sent it (also `ctx.message`). */
    readonly type: string,
    /** What the client sent with it (`undefined` if nothing). */
    public data: D,
    /** The connection the message came on. */
    readonly connection: Connection<Api>,
    readonly server: MeshServer<Api>,
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
export type MessageHandler<D = unknown, Api extends ApiShape = UntypedApi> = (ctx: MessageContext<D, Api>) => unknown

/**
 * Runs before a handler; throwing stops the chain and the client's `command()` rejects.
 * `Fields` are what it adds to the context (`ctx.user = ...`): optional while
 * middleware runs (an earlier step may not have set them yet), present in the
 * handlers it runs before. Declare it `const auth: Middleware<{ user: User }> = (ctx) => { ... }`.
 */
export type Middleware<Fields extends object = NoFields> = (ctx: MeshContext<unknown> & Partial<Fields>) => void | Promise<void>

/** Answers a command; what it returns (or resolves to) is the client's reply. */
export type CommandHandler<P = unknown, R = unknown, Api extends ApiShape = UntypedApi> = (ctx: MeshContext<P, Api>) => R | Promise<R>
