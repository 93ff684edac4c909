import { mergeOptions, requireCount, requireKnownKeys, requirePositive, type OptionKeys } from '../../shared/options.js'
import { DEFAULT_PARTITIONS } from './stream-format.js'

/**
 * The server's `portal` option: forward connections, authentications, client
 * messages and disconnections to Portals (other processes reading Redis streams),
 * and forward commands no local handler owns to the portals that registered them.
 */
export interface ServerPortalOptions {
  /** Forward to portals. Needs the `redis` option: portals live in other processes. */
  enabled: boolean
  /**
   * A portal group's live portals share the event partitions; `false`: one portal of
   * each group handles everything and the others stand by. Written to the portal
   * config in Redis, where portals read it. @default true
   */
  distributeLoad?: boolean
  /**
   * Event streams the events are spread over by connection id. More partitions let
   * more portals of a group share the load; every server of a namespace must use the
   * same number (a server that finds another value in Redis warns and overwrites it).
   * @default 16
   */
  partitions?: number
  /**
   * Events kept for portals across all partitions (each partition keeps
   * `ceil(maxBacklog / partitions)`); past that the oldest are dropped, counted in
   * `server.stats.portalEventsDropped` when a portal group had not read them yet.
   * @default 100000
   */
  maxBacklog?: number
  /** Milliseconds a forwarded command waits for a portal's reply before the client gets `TIMEOUT`. @default 30000 */
  commandTimeout?: number
  /**
   * Handshake headers left out of the connection events, lower-case: credentials stay
   * out of Redis and portals unless asked for. `[]` forwards every header (a portal
   * that authenticates by cookie needs that).
   * @default ['cookie', 'authorization', 'proxy-authorization']
   */
  redactHeaders?: readonly string[]
}

export const serverPortalDefaults = {
  enabled: false,
  distributeLoad: true,
  partitions: DEFAULT_PARTITIONS,
  maxBacklog: 100_000,
  commandTimeout: 30_000,
  redactHeaders: ['cookie', 'authorization', 'proxy-authorization'] as readonly string[],
} satisfies Required<ServerPortalOptions>

export type ResolvedServerPortalOptions = typeof serverPortalDefaults

const serverPortalOptionKeys: OptionKeys<ServerPortalOptions> = {
  enabled: true,
  distributeLoad: true,
  partitions: true,
  maxBacklog: true,
  commandTimeout: true,
  redactHeaders: true,
}

/**
 * Checks and completes the `portal` option; `undefined` when portals are off, so
 * that the server builds nothing for them. `hasRedis`: whether the server has the
 * `redis` option, without which no portal could ever read what it writes.
 */
export function resolveServerPortalOptions(options: ServerPortalOptions | undefined, hasRedis: boolean): ResolvedServerPortalOptions | undefined {
  if (options === undefined) return undefined
  requireKnownKeys(options, serverPortalOptionKeys, 'portal.')
  const resolved = mergeOptions(serverPortalDefaults, options)
  if (typeof resolved.enabled !== 'boolean') throw new TypeError('portal.enabled must be a boolean')
  if (typeof resolved.distributeLoad !== 'boolean') throw new TypeError('portal.distributeLoad must be a boolean')
  requireCount('portal.partitions', resolved.partitions)
  requireCount('portal.maxBacklog', resolved.maxBacklog)
  requirePositive('portal.commandTimeout', resolved.commandTimeout)
  if (!Array.isArray(resolved.redactHeaders) || !resolved.redactHeaders.every((name) => typeof name === 'string')) {
    throw new TypeError('portal.redactHeaders must be an array of header names')
  }
  resolved.redactHeaders = resolved.redactHeaders.map((name) => name.toLowerCase())
  // Each partition keeps at least one event, so fewer events than partitions cannot be honoured.
  if (resolved.maxBacklog < resolved.partitions) {
    throw new RangeError(`portal.maxBacklog (${resolved.maxBacklog}) must be at least portal.partitions (${resolved.partitions})`)
  }
  if (!resolved.enabled) return undefined
  if (!hasRedis) throw new TypeError('portal.enabled needs the redis option: portals run in other processes and read the events from Redis')
  return resolved
}
