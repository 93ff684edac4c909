import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { ApiShape, UntypedApi } from '../shared/api.js'
import { mergeOptions, requireCount, requireKnownKeys, requireNonNegative, requirePositive, type OptionKeys } from '../shared/options.js'
import { ApiSchemas } from './api-schemas.js'
import { authenticationOptionKeys, type AuthenticationOptions, type UpgradeAuthenticator } from './authentication.js'
import type { Logger } from './logger.js'
import { resolveRateLimit, type RateLimitOptions, type ResolvedRateLimitOptions } from './rate-limiter.js'
import type { AllowedOrigins } from './origin-policy.js'
import { resolveSyncOptions, type ResolvedSyncOptions, type SyncOptions } from './managers/redelivery.js'
import { requireRedisConfig, type RedisConfig } from './store/redis-client.js'
import type { MeshBus, MeshStore } from './store/types.js'
import type { MetricsOptions } from './prometheus-metrics.js'
import { resolveServerPortalOptions, type ResolvedServerPortalOptions, type ServerPortalOptions } from './portal/server-portal-options.js'

export interface MeshServerOptions<Api extends ApiShape = UntypedApi> {
  /**
   * The application's API as an object of Standard Schemas (zod, valibot, arktype...),
   * made with `defineApi`: it types the server, and the payloads of commands
   * (`commands.<name>.payload`) and client messages (`messages.<type>`) are validated
   * with it before any middleware runs; an invalid one gets `BAD_REQUEST` with the
   * schema's issues. Entries made with `unchecked<T>()` and commands without
   * `payload` are not checked; results, events and channel messages never are.
   * Checked at construction: a section that is not an object, or an entry that is
   * not a Standard Schema, throws. @default none: nothing is validated
   */
  api?: Api
  /** Port to listen on; 0 picks a free one (read it from `server.port` after `ready()`). Ignored with `server`. */
  port?: number
  /** Host to bind. @default all interfaces */
  host?: string
  /** URL path that accepts WebSocket upgrades. @default '/' */
  path?: string
  /** Attach to an existing HTTP(S) server instead of creating one. The server is not closed by `close()`. */
  server?: HttpServer | HttpsServer
  /** Milliseconds between liveness pings. @default 30000 */
  pingInterval?: number
  /** Milliseconds between latency measurements. @default 5000 */
  latencyInterval?: number
  /** Pongs a connection may miss in a row before it is terminated. @default 1 */
  maxMissedPongs?: number
  /** Largest frame accepted, in bytes; a larger one closes the socket with 1009. @default 1048576 (1 MiB) */
  maxPayload?: number
  /** Largest presence state (as JSON) a connection may hold per room; larger is refused with `PAYLOAD_TOO_LARGE`. @default 1024 (1 KiB) */
  maxPresenceBytes?: number
  /**
   * Milliseconds a closed connection's presence stays before its `leave` goes out, so
   * that a client reconnecting meanwhile (it rejoins with its last state) is never
   * seen gone. 0: at once. `leaveRoom` and dead instances leave at once regardless.
   * @default 5000 (covers the client's first reconnect attempt, at most 2 s by default)
   */
  presenceLeaveDelay?: number
  /** Bytes that may wait for a slow reader before its connection is closed with 4008. @default 8388608 (8 MiB) */
  maxBufferedBytes?: number
  /** Requests one connection may have in flight; more are refused with `TOO_MANY_REQUESTS`. @default 256 */
  maxPendingRequests?: number
  /**
   * Most channel messages one subscribe reply carries: a larger `historyLimit` is
   * lowered to this, and a resume that missed more gets the newest this many with
   * `complete: false`. @default 1000
   */
  maxHistoryLimit?: number
  /**
   * Most message bytes (as stored: msgpack) the `history` or `missed` of one
   * subscribe reply holds: the newest messages that fit; a resume that could not
   * get them all gets `complete: false`. @default 1048576 (1 MiB)
   */
  maxHistoryBytes?: number
  /**
   * Channel history reads (subscribes and resumes) this instance runs at once;
   * more wait their turn, so that a wave of resumes cannot crowd out the
   * instance's other store calls. One that waits longer than `redisTimeout` fails
   * with `UNAVAILABLE`. @default 16
   */
  maxConcurrentHistoryReads?: number
  /** Channels one connection may be subscribed to; one more gets `LIMIT_EXCEEDED`. @default 1000 */
  maxChannelsPerConnection?: number
  /**
   * Rooms a connection may be in when it asks to join another (`mesh/join-room`);
   * one more gets `LIMIT_EXCEEDED`. Rooms the server adds it to count, but
   * `server.addToRoom` itself is never refused. @default 1000
   */
  maxRoomsPerConnection?: number
  /** Longest room or channel name a client may use, in UTF-8 bytes; a longer one gets `LIMIT_EXCEEDED`. @default 255 */
  maxNameLength?: number
  /** Milliseconds `close()` waits for sockets to finish their close handshake before cutting them. @default 2000 */
  closeTimeout?: number
  /**
   * Answer `GET /healthz` (200 while the process serves) and `GET /readyz` (200 when
   * listening, joined to its store, its Redis reachable and not draining; 503 with the
   * reasons otherwise) on meshkit's own HTTP server, and through `server.httpHandler()`
   * on a server of yours. @default true
   */
  healthChecks?: boolean
  /** Compress messages (costly in CPU and memory per connection). @default false */
  perMessageDeflate?: boolean
  /**
   * Redis shared by the instances: a URL, ioredis options, or an ioredis client
   * (copied, never used or closed directly). For Redis Cluster, its startup nodes
   * (`[{ host, port }, ...]`) or an ioredis `Cluster` (copied the same way, its
   * `redisOptions` such as password and TLS kept): keys are hash-tagged per room,
   * channel, user and connection, and pub/sub is sharded (`SPUBLISH`, one subscriber
   * connection per master); needs Redis 7. Without it the server runs alone on an
   * in-memory store.
   */
  redis?: RedisConfig
  /** Mesh's name for `redis`, accepted as an alias. */
  redisOptions?: RedisConfig
  /** Prefix of every Redis key and channel, so that deployments can share a Redis. @default 'meshkit' */
  namespace?: string
  /** Milliseconds an instance's liveness entry lives without a refresh; a dead instance is cleaned up within about 1.5 × this. @default 20000 */
  instanceTtl?: number
  /** Milliseconds a Redis command may take before it fails with `UNAVAILABLE`. @default 5000 */
  redisTimeout?: number
  /**
   * Authenticates at the HTTP upgrade: receives the request (headers, cookies,
   * query string) and returns the user (an object with an `id`), or `null` / a throw
   * to refuse with 401 (or the thrown error's `status`).
   */
  authenticate?: UpgradeAuthenticator
  /**
   * Web pages allowed to connect, by their `Origin` header: origins
   * (`'https://app.example.com'`), wildcards standing for one or more host labels
   * (`'https://*.example.com'`), `'*'` for any, RegExps tested against the header, or
   * `(origin, request) => boolean` (`origin` undefined without the header; anything
   * but `true` refuses). Others get HTTP 403 before `authenticate` runs. Upgrades
   * without an `Origin` (clients that are not browsers) pass a list.
   * @default same origin: an `Origin` is accepted only if its host and port are the request's `Host`
   */
  allowedOrigins?: AllowedOrigins
  /**
   * Connections this instance holds at most, counting upgrades being authenticated;
   * more get HTTP 503 before `authenticate` runs. @default Infinity
   */
  maxConnections?: number
  /** Mesa's authentication options, for `client.authenticate()` and `required` gating. */
  authentication?: AuthenticationOptions
  /** Mesa's `sync`: keep user-addressed messages for offline users and redeliver them on authentication. */
  sync?: SyncOptions
  /** Shared state; the in-memory store when not given (advanced: for custom stores). */
  store?: MeshStore
  /** Messages between instances; the in-process bus when not given. */
  bus?: MeshBus
  /** Receives what the server cannot throw: failing listeners, store faults. @default silent */
  logger?: Logger
  /**
   * Send the text of a handler's or middleware's throw that is not a `MeshError` to
   * the client (for development). Off, the client gets `INTERNAL_ERROR` with
   * `INTERNAL_ERROR_MESSAGE` and the server logs the real error. @default false
   */
  exposeErrors?: boolean
  /**
   * Per-connection token bucket over every frame a client sends (requests, pongs,
   * malformed frames): `points` frames per `duration` ms, refilled continuously.
   * A request over the limit gets `TOO_MANY_REQUESTS` without running middleware or
   * its handler; a connection that keeps sending past `closeAfter` more is closed
   * with 4029. @default off
   */
  rateLimit?: RateLimitOptions
  /**
   * Keep each connection's messages, readable as `connection.messages` (Mesa's
   * `options.storeMessages`): the events written to it and the client messages it
   * sent. Commands, replies, channel messages, pings and latency reports are not
   * messages. Each is kept once, bounded by `maxStoredMessages`. @default false
   */
  storeMessages?: boolean
  /** Messages kept per direction per connection with `storeMessages`; older ones are dropped first. @default 100 */
  maxStoredMessages?: number
  /**
   * Accept only clients of exactly this server's meshkit version (Mesa's
   * `client.enforceEqualVersions`). The client offers its version at the upgrade;
   * another version, or none, is closed with 4009 before authentication, and the
   * client fails with `VERSION_MISMATCH` and does not reconnect. @default false
   */
  enforceEqualVersions?: boolean
  /**
   * Forward connections, authentications, client messages, disconnections and
   * commands with no local handler to Portals in other processes (needs `redis`).
   * @default off
   */
  portal?: ServerPortalOptions
  /**
   * Prometheus metrics through prom-client (an optional peer dependency: install it):
   * `true` registers them in a registry of the server's own, or give `{ register }`
   * (a prom-client `Registry`) and `prefix`. Served as `GET /metrics` on meshkit's own
   * HTTP server, and by `server.httpHandler()` on yours. See docs/api.md for the list.
   * @default false
   */
  metrics?: boolean | MetricsOptions
}

export const serverDefaults = {
  port: 0,
  host: undefined as string | undefined,
  path: '/',
  pingInterval: 30_000,
  latencyInterval: 5_000,
  maxMissedPongs: 1,
  maxPayload: 1024 * 1024,
  maxPresenceBytes: 1024,
  presenceLeaveDelay: 5_000,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxPendingRequests: 256,
  closeTimeout: 2_000,
  maxHistoryLimit: 1_000,
  maxHistoryBytes: 1024 * 1024,
  maxConcurrentHistoryReads: 16,
  maxChannelsPerConnection: 1_000,
  maxRoomsPerConnection: 1_000,
  maxNameLength: 255,
  perMessageDeflate: false,
  healthChecks: true,
  namespace: 'meshkit',
  instanceTtl: 20_000,
  redisTimeout: 5_000,
  exposeErrors: false,
  maxConnections: Infinity,
  enforceEqualVersions: false,
  storeMessages: false,
  maxStoredMessages: 100,
  metrics: false as boolean | MetricsOptions,
} satisfies Partial<MeshServerOptions>

/** Every server option; `redis` holds ioredis options, which are ioredis's to check. */
const serverOptionKeys: OptionKeys<MeshServerOptions> = {
  api: true,
  port: true,
  allowedOrigins: true,
  maxConnections: true,
  exposeErrors: true,
  rateLimit: true,
  host: true,
  path: true,
  server: true,
  pingInterval: true,
  latencyInterval: true,
  maxMissedPongs: true,
  maxPayload: true,
  maxPresenceBytes: true,
  presenceLeaveDelay: true,
  maxBufferedBytes: true,
  maxPendingRequests: true,
  maxHistoryLimit: true,
  maxHistoryBytes: true,
  maxConcurrentHistoryReads: true,
  maxChannelsPerConnection: true,
  maxRoomsPerConnection: true,
  maxNameLength: true,
  closeTimeout: true,
  perMessageDeflate: true,
  healthChecks: true,
  redis: true,
  redisOptions: true,
  namespace: true,
  instanceTtl: true,
  redisTimeout: true,
  authenticate: true,
  authentication: true,
  sync: true,
  store: true,
  bus: true,
  logger: true,
  portal: true,
  enforceEqualVersions: true,
  storeMessages: true,
  maxStoredMessages: true,
  metrics: true,
}

/** The options over their defaults; nested ones (`sync`, `rateLimit`, `portal`) resolved once, here. */
export type ResolvedServerOptions = typeof serverDefaults &
  Omit<MeshServerOptions, 'sync' | 'rateLimit' | 'portal'> & {
    sync: ResolvedSyncOptions
    rateLimit: ResolvedRateLimitOptions | undefined
    /** `undefined` unless portals are enabled. */
    portal: ResolvedServerPortalOptions | undefined
    /** The schemas of `api`; `undefined` when it has none, so that requests ask nothing. */
    schemas: ApiSchemas | undefined
  }

export function resolveServerOptions(options: MeshServerOptions): ResolvedServerOptions {
  requireKnownKeys(options, serverOptionKeys)
  if (options.authentication !== undefined) requireKnownKeys(options.authentication, authenticationOptionKeys, 'authentication.')
  const merged = mergeOptions(serverDefaults, options)
  const resolved: ResolvedServerOptions = {
    ...merged,
    sync: resolveSyncOptions(merged.sync),
    rateLimit: merged.rateLimit === undefined ? undefined : resolveRateLimit(merged.rateLimit),
    portal: resolveServerPortalOptions(merged.portal, merged.redis !== undefined || merged.redisOptions !== undefined),
    schemas: ApiSchemas.from(merged.api),
  }
  const numeric = ['pingInterval', 'latencyInterval', 'maxPayload', 'maxPresenceBytes', 'maxBufferedBytes', 'maxPendingRequests', 'instanceTtl', 'redisTimeout'] as const
  for (const key of numeric) {
    requirePositive(key, resolved[key])
  }
  // Announced in the hello, where clients pace their requests by it: a whole number (or Infinity, announced as none).
  if (Number.isFinite(resolved.maxPendingRequests) && !Number.isInteger(resolved.maxPendingRequests)) {
    throw new RangeError(`maxPendingRequests must be a whole number, got ${String(resolved.maxPendingRequests)}`)
  }
  const counts = ['maxHistoryLimit', 'maxHistoryBytes', 'maxConcurrentHistoryReads', 'maxChannelsPerConnection', 'maxRoomsPerConnection', 'maxNameLength', 'maxStoredMessages'] as const
  for (const key of counts) requireCount(key, resolved[key])
  requireCount('maxConnections', resolved.maxConnections, true)
  requireNonNegative('maxMissedPongs', resolved.maxMissedPongs)
  requireNonNegative('closeTimeout', resolved.closeTimeout)
  requireNonNegative('presenceLeaveDelay', resolved.presenceLeaveDelay)
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65535) {
    throw new RangeError(`port must be an integer from 0 to 65535, got ${String(resolved.port)}`)
  }
  const { authentication } = resolved
  if (authentication?.timeout !== undefined) requirePositive('authentication.timeout', authentication.timeout)
  if (resolved.authenticate !== undefined && typeof resolved.authenticate !== 'function') {
    throw new TypeError('authenticate must be a function')
  }
  if (resolved.redis !== undefined && resolved.redisOptions !== undefined) {
    throw new TypeError('Give either redis or redisOptions, not both')
  }
  if (resolved.redis !== undefined) requireRedisConfig('redis', resolved.redis)
  if (resolved.redisOptions !== undefined) requireRedisConfig('redisOptions', resolved.redisOptions)
  for (const key of ['exposeErrors', 'enforceEqualVersions', 'storeMessages', 'healthChecks'] as const) {
    if (typeof resolved[key] !== 'boolean') throw new TypeError(`${key} must be a boolean`)
  }
  const { metrics } = resolved
  if (typeof metrics !== 'boolean') {
    if (typeof metrics !== 'object' || metrics === null) throw new TypeError('metrics must be true, false or { register, prefix }')
    requireKnownKeys(metrics, { register: true, prefix: true }, 'metrics.')
  }
  if (!resolved.path.startsWith('/')) throw new RangeError(`path must start with "/", got "${resolved.path}"`)
  return resolved
}
