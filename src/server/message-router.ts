import { ErrorCode, MeshError, toClientError } from '../shared/errors.js'
import { isMessageType } from '../shared/protocol.js'
import { invalidPayload, type ApiSchemas, type Verdict } from './api-schemas.js'
import { faultIn } from './command-registry.js'
import { isThenable, runChain } from './compose.js'
import type { Connection } from './connection.js'
import { MessageContext, type CommandHandler, type MeshContext, type MessageHandler, type Middleware } from './context.js'
import type { Logger } from './logger.js'
import type { MeshServer } from './mesh-server.js'
import { noInstruments, type Instruments } from './instruments.js'

/** Client messages this instance did not hand to any handler, by why. Counters only grow. */
export interface MessageStats {
  /** Accepted messages that no handler (typed, `'*'` or forwarder) took: logged at debug. */
  unhandledMessages: number
  /** Dropped because authentication is required and the connection had not authenticated. */
  unauthorizedMessages: number
  /** Dropped by middleware that threw, because too many waited behind async middleware, or over the rate limit. */
  droppedMessages: number
  /** Handler calls that threw or rejected (each logged at error). */
  failedMessages: number
  /** Refused by their schema (the `api` option), before middleware; the client got `BAD_REQUEST`. */
  invalidMessages: number
}

/**
 * Called for every message the middleware accepted, after the local handlers: the
 * seam where a portal forwarder hooks in. It must not throw (a throw is logged).
 */
export type MessageForwarder = (ctx: MessageContext) => void

/** What the router needs from the rest of the server. */
export interface MessageRouterParts {
  server: MeshServer
  /** The global middleware (live: later `addMiddleware` calls count). */
  middleware: () => readonly Middleware[]
  /** Whether this connection's messages may run (authentication required and missing: no). */
  mayRun: (connection: Connection) => boolean
  logger: Logger
  /** Told of every failed handler (the `onError` hooks). */
  onFault?: (error: unknown, connection: Connection, type: string) => void
  /** Messages one connection may have waiting behind async middleware before more are dropped. */
  maxWaiting: number
  /** The `api` option's schemas; absent when it has none. */
  schemas?: ApiSchemas
  /** Whether a schema's throw may reach the client with its text (`exposeErrors`). */
  exposeErrors?: boolean
}

/**
 * Client messages (`client.send`): the auth gate, global middleware and the
 * handlers, in the order each connection sent them. Handlers start in arrival
 * order; an async handler is not awaited before the next message (as in Mesa), so
 * one slow handler cannot stall a connection. Only async *middleware* holds later
 * messages back, because otherwise a later message could overtake an earlier one
 * whose middleware is still deciding.
 */
export class MessageRouter {
  private readonly typed = new Map<string, Set<MessageHandler>>()
  private readonly any = new Set<MessageHandler>()
  readonly stats: MessageStats = { unhandledMessages: 0, unauthorizedMessages: 0, droppedMessages: 0, failedMessages: 0, invalidMessages: 0 }
  /** The portal seam; absent until something forwards messages. */
  forwarder: MessageForwarder | undefined
  /** Told what became of each message; set by the server when metrics are on. */
  instruments: Instruments = noInstruments

  constructor(private readonly parts: MessageRouterParts) {}

  /** Adds a handler for one type or `'*'` (every type); returns the function that removes it. */
  on(type: string, handler: MessageHandler): () => void {
    if (type !== '*' && !isMessageType(type)) throw new TypeError('A message type must be a non-empty string of at most 255 UTF-8 bytes, or "*"')
    if (typeof handler !== 'function') throw new TypeError(`The handler of message "${type}" must be a function`)
    const set = type === '*' ? this.any : this.typed.get(type) ?? new Set<MessageHandler>()
    if (set !== this.any) this.typed.set(type, set)
    // A wrapper, so that the same function added twice is called twice and removed once per call.
    const entry: MessageHandler = (ctx) => handler(ctx)
    set.add(entry)
    return () => {
      set.delete(entry)
      if (set.size === 0 && set !== this.any && this.typed.get(type) === set) this.typed.delete(type)
    }
  }

  /** One message from a client; never throws. */
  dispatch(connection: Connection, type: string, data: unknown): void {
    if (!this.parts.mayRun(connection)) {
      this.unauthorized(connection, type)
      return
    }
    const waiting = connection.messageTail
    if (waiting === undefined) {
      const deciding = this.run(connection, type, data)
      if (deciding) this.hold(connection, deciding)
      return
    }
    if (connection.waitingMessages >= this.parts.maxWaiting) {
      this.count('droppedMessages', 'dropped')
      this.parts.logger.warn?.('dropped a client message: too many wait behind async middleware', { type, connectionId: connection.id, maxWaiting: this.parts.maxWaiting })
      return
    }
    connection.waitingMessages++
    this.hold(connection, waiting.then(() => {
      connection.waitingMessages--
      return this.run(connection, type, data)
    }))
  }

  /** A message over the connection's rate limit: counted, and logged at debug only, so that a flood is not a flood of log lines. */
  rateLimited(connection: Connection, type: string): void {
    this.count('droppedMessages', 'rate_limited')
    this.parts.logger.debug?.('dropped a client message: over the rate limit', { type, connectionId: connection.id })
  }

  private hold(connection: Connection, deciding: Promise<void>): void {
    connection.messageTail = deciding
    void deciding.then(() => {
      if (connection.messageTail === deciding) connection.messageTail = undefined
    })
  }

  /** The schema, if the type has one, then middleware and the handlers; a promise only while an async schema or middleware is deciding. */
  private run(connection: Connection, type: string, data: unknown): Promise<void> | undefined {
    const check = this.parts.schemas?.message(type)
    if (check === undefined) return this.accept(connection, type, data)
    let verdict: Verdict | Promise<Verdict>
    try {
      verdict = check(data)
    } catch (error) {
      this.broken(connection, type, error)
      return undefined
    }
    if (!isThenable(verdict)) return this.checked(connection, type, verdict)
    return verdict.then(
      (settled) => this.checked(connection, type, settled),
      (error: unknown) => this.broken(connection, type, error),
    )
  }

  /**
   * A schema's verdict. A refused message is dropped, and, unlike a refusal by
   * middleware, reported with its issues: the client broke the API's contract and
   * has no other way to find out why nothing happened.
   */
  private checked(connection: Connection, type: string, verdict: Verdict): Promise<void> | undefined {
    if (verdict.valid) return this.accept(connection, type, verdict.value)
    this.count('invalidMessages', 'invalid')
    this.parts.logger.debug?.('dropped a client message: refused by its schema', { type, connectionId: connection.id })
    connection.respondError(0, invalidPayload(verdict.issues, { type }))
    return undefined
  }

  /** A schema that threw or rejected: a fault of the server's, logged; the message is dropped and the client told (`INTERNAL_ERROR`). */
  private broken(connection: Connection, type: string, error: unknown): void {
    this.count('droppedMessages', 'dropped')
    this.parts.logger.error?.('message schema failed', { type, connectionId: connection.id, error })
    this.parts.onFault?.(error, connection, type)
    const reply = toClientError(error, this.parts.exposeErrors ?? false)
    connection.respondError(0, new MeshError(reply.code, reply.message, { data: { type } }))
  }

  /** Middleware, then the handlers; a promise only while async middleware is deciding. */
  private accept(connection: Connection, type: string, data: unknown): Promise<void> | undefined {
    const ctx = new MessageContext(type, data, connection, this.parts.server)
    let result: unknown
    try {
      result = runChain(this.parts.middleware(), this.deliver as unknown as CommandHandler, ctx as unknown as MeshContext)
    } catch (error) {
      this.refused(ctx, error)
      return undefined
    }
    if (!isThenable(result)) return undefined
    return Promise.resolve(result).then(noop, (error: unknown) => this.refused(ctx, error))
  }

  /**
   * A message not handed to any handler: counted in `stats` and, under its outcome, in
   * the metrics, in one place, so that no path counts one and forgets the other.
   */
  private count(stat: Exclude<keyof MessageStats, 'failedMessages'>, outcome: string): void {
    this.stats[stat]++
    this.instruments.messageReceived(outcome)
  }

  /** Calls every handler of the message; a throw in one does not stop the others. */
  private readonly deliver = (ctx: MessageContext): undefined => {
    const typed = this.typed.get(ctx.type)
    if (typed || this.any.size > 0 || this.forwarder) this.instruments.messageReceived('delivered')
    if (typed) for (const handler of typed) this.call(handler, ctx)
    for (const handler of this.any) this.call(handler, ctx)
    if (this.forwarder) {
      try {
        this.forwarder(ctx)
      } catch (error) {
        this.parts.logger.error?.('message forwarder failed', { type: ctx.type, connectionId: ctx.connection.id, error })
      }
    } else if (!typed && this.any.size === 0) {
      this.count('unhandledMessages', 'unhandled')
      this.parts.logger.debug?.('client message with no handler', { type: ctx.type, connectionId: ctx.connection.id })
    }
    return undefined
  }

  private call(handler: MessageHandler, ctx: MessageContext): void {
    try {
      const result = handler(ctx)
      if (isThenable(result)) result.then(undefined, (error: unknown) => this.failed(ctx, error))
    } catch (error) {
      this.failed(ctx, error)
    }
  }

  private failed(ctx: MessageContext, error: unknown): void {
    this.stats.failedMessages++
    this.parts.logger.error?.('message handler failed', { type: ctx.type, connectionId: ctx.connection.id, error })
    this.parts.onFault?.(error, ctx.connection, ctx.type)
  }

  /** Middleware threw: the message is dropped, and the client hears nothing (it asked for no reply). */
  private refused(ctx: MessageContext, error: unknown): void {
    this.count('droppedMessages', 'dropped')
    // The command path's rule: a MeshError is middleware refusing on purpose (validation, permissions); a fault is worth a warning.
    const fault = faultIn(error)
    if (fault === undefined) this.parts.logger.debug?.('middleware dropped a client message', { type: ctx.type, connectionId: ctx.connection.id, error })
    else this.parts.logger.warn?.('middleware failed; client message dropped', { type: ctx.type, connectionId: ctx.connection.id, error: fault.error })
  }

  /**
   * Authentication is required and missing. The first such message of a connection
   * gets an `UNAUTHORIZED` error frame not tied to a request (the client's `error`
   * event), so that a client that forgot to authenticate finds out; later ones are
   * only counted, so that a loop of sends does not become a loop of error frames.
   */
  private unauthorized(connection: Connection, type: string): void {
    this.count('unauthorizedMessages', 'unauthorized')
    this.parts.logger.debug?.('dropped a client message: not authenticated', { type, connectionId: connection.id })
    if (connection.messageRefused) return
    connection.messageRefused = true
    connection.respondError(0, new MeshError(ErrorCode.UNAUTHORIZED, 'Authenticate before sending messages', { data: { message: type } }))
  }
}

function noop(): void {}
