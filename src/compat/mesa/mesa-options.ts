import type { Server as HttpServer } from 'node:http'
import type { AuthenticationOptions, Logger, MeshServerOptions, ServerPortalOptions, SyncOptions } from '../../server/index.js'

/** Mesa's `heartbeat` option. */
export interface MesaHeartbeatOptions {
  /**
   * Mesa's switch. Off, meshkit still pings every 30 s (its default): meshkit clients
   * treat a server that never pings as dead, so pings cannot be turned off.
   * @default false
   */
  enabled: boolean
  /** Milliseconds between heartbeats: meshkit's `pingInterval`, announced to clients in the hello. @default 10000 */
  interval?: number
  /** Heartbeats left unanswered in a row before the connection is closed: meshkit's `maxMissedPongs + 1`. @default 3 */
  maxAttempts?: number
}

/** Mesa's `reconnect` option: advertised to `meshkit/mesa` clients when they connect. */
export interface MesaReconnectOptions {
  /** Off, `meshkit/mesa` clients do not reconnect after a drop. @default false */
  enabled: boolean
  /** Milliseconds a client waits between reconnect attempts (fixed, as Mesa did, no backoff). @default 5000 */
  interval?: number
}

/** Mesa's server configuration, mapped onto `MeshServerOptions` (see docs/migrating.md). */
export interface MesaOptions {
  /** Port to listen on (unused with `server`). @default 4000 */
  port?: number
  /** URL path of WebSocket upgrades. @default '/' */
  path?: string
  /** Prefix of every Redis key and topic: meshkit's `namespace`. @default 'meshkit' */
  namespace?: string
  /** An HTTP(S) server to attach to instead of listening on `port`. @default none */
  server?: HttpServer
  /** A Redis URL or ioredis options: replication across instances. @default none (one instance, in memory) */
  redis?: MeshServerOptions['redis']
  /** `enforceEqualVersions`: close clients of another meshkit version with 4009. @default { enforceEqualVersions: false } */
  client?: { enforceEqualVersions?: boolean }
  /** `storeMessages`: keep messages on server connections and on `meshkit/mesa` clients. @default { storeMessages: false } */
  options?: { storeMessages?: boolean }
  /** Redelivery to users who were offline: meshkit's `sync`. @default { enabled: false } */
  sync?: SyncOptions
  /** Forward client events to Portals: meshkit's `portal` (needs `redis`). @default { enabled: false } */
  portal?: ServerPortalOptions
  /** Liveness pings. @default { enabled: false } */
  heartbeat?: MesaHeartbeatOptions
  /** Reconnection advertised to clients. @default { enabled: false } */
  reconnect?: MesaReconnectOptions
  /** `client.authenticate()`: meshkit's `authentication`, same five keys and defaults. @default see AuthenticationOptions */
  authentication?: AuthenticationOptions
  /** Where the facade and the server report what they cannot throw (not in Mesa). @default silent */
  logger?: Logger
}

export const mesaDefaults = {
  port: 4000,
  heartbeat: { enabled: false, interval: 10_000, maxAttempts: 3 },
  reconnect: { enabled: false, interval: 5_000 },
} as const

const mesaKeys: Record<keyof Required<MesaOptions>, true> = {
  port: true, path: true, namespace: true, server: true, redis: true, client: true, options: true,
  sync: true, portal: true, heartbeat: true, reconnect: true, authentication: true, logger: true,
}

function requireKeys(value: object | undefined, known: readonly string[], prefix: string): void {
  if (value === undefined) return
  if (typeof value !== 'object' || value === null) throw new TypeError(`${prefix} must be an object`)
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw new TypeError(`Unknown option "${prefix}${prefix ? '.' : ''}${key}"`)
  }
}

/** What clients learn about the server on connecting (the `mesa:config` event). */
export interface AdvertisedConfig {
  /** Milliseconds between reconnect attempts; absent: do not reconnect. */
  reconnectInterval?: number
  /** Milliseconds a client has to authenticate (Mesa's `c_authentication_timeout`). */
  authenticationTimeout: number
  /** Whether clients keep their messages (Mesa's `store_messages` rule). */
  storeMessages: boolean
}

export interface ResolvedMesaOptions {
  server: MeshServerOptions
  advertised: AdvertisedConfig
}

/** Checks a Mesa configuration and maps it onto meshkit's; bad values throw here. */
export function resolveMesaOptions(options: MesaOptions): ResolvedMesaOptions {
  requireKeys(options, Object.keys(mesaKeys), '')
  requireKeys(options.client, ['enforceEqualVersions'], 'client')
  requireKeys(options.options, ['storeMessages'], 'options')
  requireKeys(options.heartbeat, ['enabled', 'interval', 'maxAttempts'], 'heartbeat')
  requireKeys(options.reconnect, ['enabled', 'interval'], 'reconnect')
  const heartbeat = { ...mesaDefaults.heartbeat, ...options.heartbeat }
  const reconnect = { ...mesaDefaults.reconnect, ...options.reconnect }
  if (heartbeat.enabled && (!Number.isInteger(heartbeat.maxAttempts) || heartbeat.maxAttempts < 1)) {
    throw new RangeError(`heartbeat.maxAttempts must be a whole number of at least 1, got ${String(heartbeat.maxAttempts)}`)
  }
  if (reconnect.enabled && !(typeof reconnect.interval === 'number' && reconnect.interval >= 0 && Number.isFinite(reconnect.interval))) {
    throw new RangeError(`reconnect.interval must be a finite number of ms >= 0, got ${String(reconnect.interval)}`)
  }
  const server: MeshServerOptions = {
    path: options.path,
    namespace: options.namespace,
    redis: options.redis,
    logger: options.logger,
    enforceEqualVersions: options.client?.enforceEqualVersions,
    storeMessages: options.options?.storeMessages,
    sync: options.sync,
    portal: options.portal,
    authentication: options.authentication,
  }
  // An attached server listens already; a port next to it would open a second one.
  if (options.server !== undefined) server.server = options.server
  else server.port = options.port ?? mesaDefaults.port
  if (heartbeat.enabled) {
    server.pingInterval = heartbeat.interval
    server.maxMissedPongs = heartbeat.maxAttempts - 1
  }
  for (const key of Object.keys(server) as (keyof MeshServerOptions)[]) {
    if (server[key] === undefined) delete server[key]
  }
  return {
    server,
    advertised: {
      ...(reconnect.enabled && { reconnectInterval: reconnect.interval }),
      authenticationTimeout: options.authentication?.timeout ?? 10_000,
      storeMessages: options.options?.storeMessages === true,
    },
  }
}

/** The event that carries `AdvertisedConfig`; meshkit's `mesh/` prefix is for commands, so no clash. */
export const CONFIG_EVENT = 'mesa:config'
