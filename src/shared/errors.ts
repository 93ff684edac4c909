/**
 * Every error code meshkit itself produces. Names are the API: they travel on the
 * wire as these strings, and applications may add their own codes by throwing a
 * `MeshError` with any other string.
 */
export const ErrorCode = {
  /** A frame or request that does not follow the protocol. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** No command of that name is registered. */
  NOT_FOUND: 'NOT_FOUND',
  /** A handler or middleware threw something that was not a `MeshError`. */
  INTERNAL_ERROR: 'INTERNAL_ERROR',
  /** No reply arrived within the command's timeout. */
  TIMEOUT: 'TIMEOUT',
  /** The socket closed while the request was in flight, or the client is closed. */
  CONNECTION_CLOSED: 'CONNECTION_CLOSED',
  /** A connection attempt failed; `data` says why (see `ConnectionFailure` in the client). */
  CONNECTION_FAILED: 'CONNECTION_FAILED',
  /** The connection has too many requests in flight; retry later. */
  TOO_MANY_REQUESTS: 'TOO_MANY_REQUESTS',
  /** The encoded request is larger than the server accepts. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A value could not be encoded by the connection's codec. */
  ENCODE_ERROR: 'ENCODE_ERROR',
  /** Client and server speak different protocol versions. */
  VERSION_MISMATCH: 'VERSION_MISMATCH',
  /** A backing service (Redis) is unreachable. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** Not authenticated (authentication failed, or is required first). */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** Authenticated, but not allowed (for example, re-authenticating as another user). */
  FORBIDDEN: 'FORBIDDEN',
  /** A feature that is switched off in the options. */
  NOT_ENABLED: 'NOT_ENABLED',
  /** Something this environment cannot do: `client.commandSync` outside Node (in a browser). */
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  /** A per-connection limit was reached (rooms, subscriptions, name length); see the server's options. */
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  /** Another authentication of this connection is still being decided; only one runs at a time. */
  AUTH_IN_PROGRESS: 'AUTH_IN_PROGRESS',
  /** A listener the application registered with `client.on` threw; `data.event` names the event, `cause` is what it threw. */
  LISTENER_ERROR: 'LISTENER_ERROR',
  /** `client.subscribe()` to a channel this client already subscribes to (or is subscribing to); unsubscribe first. */
  ALREADY_SUBSCRIBED: 'ALREADY_SUBSCRIBED',
  /**
   * Client messages (`client.send`) that will never be written, reported as the client's
   * `error` event: `data` is `{ count, reason }`, reason `'overflow'` (more than
   * `maxQueuedMessages` waited for a socket), `'closed'` (the client closed with some
   * waiting) or `'too-large'` (queued before the server's `maxPayload` was known).
   */
  MESSAGES_DROPPED: 'MESSAGES_DROPPED',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * The message of an `INTERNAL_ERROR` the server made from a throw that was not a
 * `MeshError` (unless `exposeErrors`): what was thrown (SQL, addresses, stacks)
 * stays in the server's log.
 */
export const INTERNAL_ERROR_MESSAGE = 'Internal error'

export interface MeshErrorOptions {
  /** Extra structured data sent to the client with the error. */
  data?: unknown
  /** The underlying error, kept on the server side only. */
  cause?: unknown
}

/**
 * The one error type of meshkit. `code` is stable and meant for programs;
 * `message` is for people. A `MeshError` thrown by a handler reaches the client
 * with its own code, message and data.
 */
export class MeshError extends Error {
  override readonly name = 'MeshError'
  readonly code: string
  readonly data?: unknown

  constructor(code: string, message: string, options: MeshErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options.data !== undefined) this.data = options.data
  }
}

export function isMeshError(value: unknown): value is MeshError {
  return value instanceof MeshError
}

/** Turns anything a handler may throw into a `MeshError`, keeping a `MeshError` as it is. */
export function toMeshError(thrown: unknown): MeshError {
  if (thrown instanceof MeshError) return thrown
  if (thrown instanceof Error) return new MeshError(ErrorCode.INTERNAL_ERROR, thrown.message, { cause: thrown })
  return new MeshError(ErrorCode.INTERNAL_ERROR, typeof thrown === 'string' ? thrown : INTERNAL_ERROR_MESSAGE, {
    cause: thrown,
  })
}

/**
 * What a client is told about a throw on the server: a `MeshError` as thrown (its
 * code, message and data are meant for clients); anything else `INTERNAL_ERROR`,
 * with the thrown message only when `expose` is set (development).
 */
export function toClientError(thrown: unknown, expose: boolean): MeshError {
  if (thrown instanceof MeshError) return thrown
  if (expose) return toMeshError(thrown)
  return new MeshError(ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE, { cause: thrown })
}
