import type { Connection, MeshHooks } from '../../server/index.js'
import type { Message } from './message.js'
import { CONFIG_EVENT } from './mesa-options.js'
import { messageOf, type ServerClient } from './server-client.js'

/** Mesa's middleware handlers, with the arguments Mesa passed. */
export interface MiddlewareHandler {
  onConnection?(client: ServerClient): void
  onDisconnection?(client: ServerClient, code: number, reason?: string): void
  onAuthenticated?(client: ServerClient): void
  /** Once per send, never once per recipient: `clients` is the one target of a `client.send`, otherwise empty. */
  onMessageSent?(message: Message<unknown>, clients: ServerClient[], fromCurrentReplica: boolean): void
  onMessageReceived?(message: Message<unknown>, client: ServerClient): void
  /** `clientIds` are the user ids a send named and could not reach (with `sync` on), or else connection ids. */
  onUndeliverableMessageSent?(message: Message<unknown>, clientIds: string[]): void
  onError?(error: Error, client?: ServerClient): void
  /** Never called: meshkit portals do not join a server (documented in docs/migrating.md). */
  onPortalJoin?(id: string): void
  /** Never called, as `onPortalLeave`. */
  onPortalLeave?(id: string): void
  /** Never called: redelivery is counted by neither hook nor event in meshkit. */
  onRedeliverUndeliverableMessages?(messages: Message<unknown>[], client: ServerClient): void
}

/** Mesa's middleware: a function of the server returning handlers. */
export type Middleware<S = unknown> = (server: S) => MiddlewareHandler

const known = new Set([
  'onConnection', 'onDisconnection', 'onAuthenticated', 'onMessageSent', 'onMessageReceived',
  'onUndeliverableMessageSent', 'onError', 'onPortalJoin', 'onPortalLeave', 'onRedeliverUndeliverableMessages',
])
const neverCalled = ['onPortalJoin', 'onPortalLeave', 'onRedeliverUndeliverableMessages'] as const

/**
 * Turns Mesa handlers into meshkit hooks, so that they run where meshkit's hooks run
 * (once per send, errors reported and never thrown into the server).
 */
export function toHooks(handler: MiddlewareHandler, clientFor: (connection: Connection) => ServerClient): { hooks: MeshHooks; unsupported: string[] } {
  if (typeof handler !== 'object' || handler === null) throw new TypeError('a Mesa middleware must return an object of handlers')
  for (const [name, value] of Object.entries(handler)) {
    if (!known.has(name)) throw new TypeError(`Unknown middleware handler "${name}"`)
    if (typeof value !== 'function') throw new TypeError(`middleware handler "${name}" must be a function`)
  }
  const h = handler
  const hooks: MeshHooks = {}
  if (h.onConnection) hooks.onConnection = (connection) => h.onConnection?.(clientFor(connection))
  if (h.onDisconnection) hooks.onDisconnection = (connection, code, reason) => h.onDisconnection?.(clientFor(connection), code, reason)
  if (h.onAuthenticated) hooks.onAuthenticated = (connection) => h.onAuthenticated?.(clientFor(connection))
  if (h.onMessageReceived) hooks.onMessageReceived = (connection, message) => h.onMessageReceived?.(messageOf(message.type, message.data), clientFor(connection))
  if (h.onMessageSent) {
    // The facade's own announcement to a new client is no message of the application.
    hooks.onMessageSent = (connection, sent) =>
      sent.type !== CONFIG_EVENT &&
      h.onMessageSent?.(messageOf(sent.type, sent.data), connection ? [clientFor(connection)] : [], !sent.relayed)
  }
  if (h.onUndeliverableMessageSent) {
    hooks.onUndeliverableMessageSent = (message, who) =>
      h.onUndeliverableMessageSent?.(messageOf(message.type, message.data), who.userIds.length > 0 ? who.userIds : who.connectionIds)
  }
  if (h.onError) {
    hooks.onError = (error, context) =>
      h.onError?.(error instanceof Error ? error : new Error(String(error)), context.connection ? clientFor(context.connection) : undefined)
  }
  return { hooks, unsupported: neverCalled.filter((name) => h[name] !== undefined) }
}
