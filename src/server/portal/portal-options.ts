import { mergeOptions, requireCount, requireKnownKeys, requirePositive, type OptionKeys } from '../../shared/options.js'
import type { Logger } from '../logger.js'

export interface PortalOptions {
  /** The servers' namespace: the portal reads and writes only under this prefix. @default 'meshkit' */
  namespace?: string
  /**
   * The portal group: every group gets every event, and within a group one live
   * portal handles each. Letters, digits, "_", "." and "-" (no ":"). @default 'default'
   */
  group?: string
  /**
   * Milliseconds the portal's announcement and partition leases live without a
   * heartbeat (one every `ttl / 3`): a portal that dies hands its work to the
   * others of its group within about `ttl + ttl / 3`. @default 5000
   */
  ttl?: number
  /** Entries read from one stream at a time (a partition's next read waits for its batch). @default 100 */
  batchSize?: number
  /** Milliseconds a Redis command may take before it fails with `UNAVAILABLE`. @default 5000 */
  redisTimeout?: number
  /** Receives what the portal cannot throw: failing handlers, Redis faults. @default silent */
  logger?: Logger
}

export const portalDefaults = {
  namespace: 'meshkit',
  group: 'default',
  ttl: 5_000,
  batchSize: 100,
  redisTimeout: 5_000,
} satisfies Partial<PortalOptions>

/** Every Portal option, so that a misspelt one throws. */
const portalOptionKeys: OptionKeys<PortalOptions> = { namespace: true, group: true, ttl: true, batchSize: true, redisTimeout: true, logger: true }

export type ResolvedPortalOptions = typeof portalDefaults & Pick<PortalOptions, 'logger'>

/** Group names end up inside key names next to command names, so ":" is kept out. */
const GROUP_NAME = /^[\w.-]+$/

export function resolvePortalOptions(options: PortalOptions): ResolvedPortalOptions {
  requireKnownKeys(options, portalOptionKeys)
  const resolved = mergeOptions(portalDefaults, options)
  if (typeof resolved.group !== 'string' || !GROUP_NAME.test(resolved.group)) {
    throw new RangeError(`group may use letters, digits, "_", "." and "-", got "${String(resolved.group)}"`)
  }
  requirePositive('ttl', resolved.ttl)
  requirePositive('redisTimeout', resolved.redisTimeout)
  requireCount('batchSize', resolved.batchSize)
  // Three heartbeats per ttl must fit in it with room for a Redis round trip.
  if (resolved.ttl < 30) throw new RangeError(`ttl must be at least 30 ms, got ${resolved.ttl}`)
  return resolved
}
