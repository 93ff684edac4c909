import type { ApiShape, CommandInput, CommandResult, EventPayload, MessageInput } from '../shared/api.js'
import type { MeshContext, MessageContext, Middleware } from './context.js'

/*
 * The server's side of the typed API (src/shared/api.ts): what its handlers receive
 * and return, and which fields middleware adds to their context. Types only.
 */

/** `{}` spelt once: "no fields" (an empty object type is what an intersection needs). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type NoFields = {}

/**
 * The fields one middleware adds: `Fields` of a `Middleware<Fields>`, `{}` for one that
 * declares none (an inline function's is inferred as `object` or `unknown`: no keys, no fields).
 */
export type MiddlewareFields<M> = M extends Middleware<infer Fields> ? (keyof Fields extends never ? NoFields : Fields) : NoFields

/**
 * What a list of middleware adds to the context of the handler it runs before: the
 * intersection of each one's fields. Only a tuple (an array literal, or the arguments
 * of `addMiddleware`) says which middleware it holds; a `Middleware[]` adds nothing.
 */
export type FieldsOf<M> = M extends readonly [infer Head, ...infer Tail] ? MiddlewareFields<Head> & FieldsOf<Tail> : NoFields

/** The middleware `registerCommand` and `addMiddleware` accept on a server whose middleware already add `Fields`. */
export type MiddlewareList<Fields extends object> = readonly Middleware<Fields>[]

/** The context of command `K`'s handler: its payload (the schema's output), the API, and the fields middleware added. */
export type CommandContext<Api extends ApiShape, K extends string, Fields> = MeshContext<CommandInput<Api, K>, Api> & Fields

/** A typed command handler: what it returns (or resolves to) must be the command's result. */
export type TypedCommandHandler<Api extends ApiShape, K extends string, Fields> = (
  ctx: CommandContext<Api, K, Fields>,
) => CommandResult<Api, K> | Promise<CommandResult<Api, K>>

/** What `onMessage(type)` handlers receive in `ctx.data`: the message's data once validated; `unknown` for `'*'` (every type). */
export type MessageDataOf<Api, T extends string> = T extends '*' ? unknown : MessageInput<Api, T>

/** A typed client-message handler, with the fields global middleware added. */
export type TypedMessageHandler<Api extends ApiShape, T extends string, Fields> = (ctx: MessageContext<MessageDataOf<Api, T>, Api> & Fields) => unknown

/** The payload and excluded connection ids of `Dispatcher.broadcastRoom`: the payload optional when `undefined` fits it. */
export type RoomDispatchArgs<Api, E extends string> = undefined extends EventPayload<Api, E>
  ? [payload?: EventPayload<Api, E>, exclude?: readonly string[]]
  : [payload: EventPayload<Api, E>, exclude?: readonly string[]]
