import {
  MeshServer as CoreMeshServer,
  type CommandHandler as CoreCommandHandler,
  type MeshContext as CoreMeshContext,
  type MeshServerOptions as CoreMeshServerOptions,
  type Middleware as CoreMiddleware,
  type FieldsOf,
} from '../../server/index.js'
import type { UntypedApi } from '../../index.js'

/**
 * Mesh's server options: meshkit's, which already carry Mesh's names (`redisOptions`,
 * `pingInterval`, `latencyInterval`, `maxMissedPongs`), with one default changed.
 */
export interface MeshServerOptions extends CoreMeshServerOptions {
  /**
   * Send the message of a thrown `Error` to the client, as Mesh did: its client
   * resolved `{ error: "Something went wrong" }`. meshkit's own server hides it.
   * @default true
   */
  exposeErrors?: boolean
}

/**
 * Mesh's context, typed as Mesh typed it: `payload` is `any` unless given, and
 * middleware may set any field (`ctx.user = ...`), read back as `unknown`. meshkit's
 * own `MeshContext` has no index signature, so that a typo is a compile error there.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface MeshContext<P = any> extends CoreMeshContext<P> {
  [field: string]: unknown
}

/** Mesh's middleware: runs before a handler and may add fields to its context. */
export type Middleware = (ctx: MeshContext) => void | Promise<void>

/** Mesh's command handler: what it returns (or resolves to) is the client's reply. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CommandHandler<P = any, R = unknown> = (ctx: MeshContext<P>) => R | Promise<R>

/** The defaults this facade sets on top of meshkit's `serverDefaults`. */
export const meshServerDefaults = {
  exposeErrors: true,
} as const satisfies Partial<MeshServerOptions>

/**
 * Mesh's `MeshServer` on meshkit: `import { MeshServer } from 'meshkit/mesh/server'`.
 * It is meshkit's server (same wire protocol, same Redis layout) with Mesh's error
 * exposure by default, the method names Mesh's README used, and Mesh's typings of
 * handlers and middleware, so that Mesh apps compile unchanged.
 */
export class MeshServer extends CoreMeshServer {
  constructor(options: MeshServerOptions = {}) {
    super({ ...meshServerDefaults, ...options })
  }

  /** Answers command `name` with `handler`, after the global middleware and then `middleware`. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override registerCommand<P = any, R = unknown>(name: string, handler: CommandHandler<P, R>, middleware: readonly Middleware[] = []): void {
    // The same objects at run time: only Mesh's looser context type differs.
    super.registerCommand(name, handler as CoreCommandHandler, middleware as readonly CoreMiddleware[])
  }

  /**
   * Middleware for every command and client message, run before the command's own.
   * Returns this server (Mesh's returned nothing), typed as meshkit's `addMiddleware` types it.
   */
  override addMiddleware<const M extends readonly Middleware[]>(...middleware: M): CoreMeshServer<UntypedApi, FieldsOf<M>> {
    super.addMiddleware(...(middleware as unknown as readonly CoreMiddleware[]))
    return this as CoreMeshServer as CoreMeshServer<UntypedApi, FieldsOf<M>>
  }

  /**
   * Mesh's name for `writeChannel`: publishes to every subscriber on every instance
   * and keeps the newest `history` messages (0: none).
   */
  async publishToChannel(channel: string, message: unknown, history = 0): Promise<void> {
    await this.writeChannel(channel, message, history)
  }
}
