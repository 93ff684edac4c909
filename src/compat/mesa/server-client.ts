import { EventEmitter } from 'node:events'
import type { Connection } from '../../server/index.js'
import { CONFIG_EVENT } from './mesa-options.js'
import { Message, toMessages, wireType, type Messages } from './message.js'

/** What `client.authenticate` is given: Mesa's `done(error, { id, user })`. */
export type AuthenticationDone = (error: Error | null | undefined, result?: { id: string | number; user?: unknown }) => void
/** Mesa's authentication handler; may also be an async function calling `done`. */
export type AuthenticationHandler = (data: unknown, done: AuthenticationDone) => void | Promise<void>

/**
 * A connection as Mesa's server-side `Client`: `message` and `disconnect` events,
 * `send`, `authenticate`. It holds no state of its own beyond the handler: identity,
 * stored messages and delivery are the connection's.
 */
export class ServerClient extends EventEmitter {
  /** The meshkit connection under this client. */
  readonly connection: Connection
  /** @internal Set by `authenticate`; the server's one `onAuthenticate` calls it. */
  authenticationHandler: AuthenticationHandler | undefined

  constructor(connection: Connection) {
    super()
    this.connection = connection
  }

  /** Mesa's `client.id`: the authenticated user's id (undefined before authentication). */
  get id(): string | undefined {
    return this.connection.userId
  }

  /** The connection's id, which Mesa called `serverId`. */
  get serverId(): string {
    return this.connection.id
  }

  get user(): unknown {
    return this.connection.user
  }

  get authenticated(): boolean {
    return this.connection.isAuthenticated
  }

  /** With `options.storeMessages`, `{ sent, received }` as `Message`s; undefined without. */
  get messages(): Messages | undefined {
    const stored = this.connection.messages
    return stored && toMessages(stored, CONFIG_EVENT)
  }

  /** Sends to this one connection; false when it is no longer open. */
  send(message: Message<unknown>): boolean {
    return this.connection.send(wireType(message), message.data)
  }

  /** Decides this client's `authenticate()` calls; a later call replaces the handler. */
  authenticate(handler: AuthenticationHandler): void {
    if (typeof handler !== 'function') throw new TypeError('client.authenticate expects a function (data, done) => ...')
    this.authenticationHandler = handler
  }

  /** Closes the connection (1000 by default, which ends the client's session). */
  disconnect(code?: number, reason?: string): void {
    this.connection.close(code, reason)
  }

  /** @internal Runs the handler as meshkit's `onAuthenticate` expects. */
  runAuthentication(data: unknown): Promise<{ id: string; user: unknown } | null> {
    const handler = this.authenticationHandler
    if (handler === undefined) return Promise.resolve(null)
    return new Promise((resolve, reject) => {
      let settled = false
      const done: AuthenticationDone = (error, result) => {
        if (settled) return
        settled = true
        if (error) reject(error)
        else if (result === undefined || result === null) resolve(null)
        else resolve({ id: String(result.id), user: result.user ?? { id: result.id } })
      }
      try {
        const returned = handler(data, done)
        // An async handler that throws before calling done refuses, as a done(error) would.
        if (returned instanceof Promise) returned.catch((error: unknown) => done(error instanceof Error ? error : new Error(String(error))))
      } catch (error) {
        done(error instanceof Error ? error : new Error(String(error)))
      }
    })
  }
}

/** Mesa's Message for a `{ type, data }` pair. */
export function messageOf(type: string, data: unknown): Message<unknown> {
  return new Message(0, data, type)
}
