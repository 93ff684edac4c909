import type { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { nanoid } from 'nanoid'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { MessageLog } from '../shared/message-log.js'
import { codecForSubprotocol, tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { BuiltinCommand, CloseCode, FrameType, isId, parseClientFrame } from '../shared/protocol.js'
import type { Authentication } from './authentication.js'
import type { CommandRegistry } from './command-registry.js'
import { Connection } from './connection.js'
import { handshakeOf, type Handshake } from './handshake.js'
import type { Heartbeat } from './heartbeat.js'
import { isUnclaimedUpgrade, pathOf, pickSubprotocol, refuseUpgrade, servesPath } from './http-endpoint.js'
import type { Logger } from './logger.js'
import type { ChannelManager } from './managers/channel-manager.js'
import type { MessageRouter } from './message-router.js'
import type { InstanceMonitor } from './managers/instance-monitor.js'
import type { LocalIndex } from './managers/local-index.js'
import type { ResolvedServerOptions } from './options.js'
import { RateLimiter, RateVerdict } from './rate-limiter.js'
import type { ServerHooks } from './server-hooks.js'
import { isSameVersion, refuseVersion } from './version-check.js'
import type { OriginPolicy } from './origin-policy.js'
import type { Instruments } from './instruments.js'
import { SyncChannels, syncProtocolOf, type Replies } from './sync-channels.js'

/** What it returns is ignored; a returned promise that rejects is logged (so `(c) => c.send(...)` is fine). */
export type ConnectionListener = (connection: Connection) => unknown

/** The server options the socket lifecycle reads. */
export type SocketLifecycleOptions = Pick<
  ResolvedServerOptions,
  'path' | 'maxPayload' | 'perMessageDeflate' | 'maxBufferedBytes' | 'pingInterval' | 'latencyInterval' | 'maxPendingRequests' | 'closeTimeout' | 'rateLimit' | 'maxConnections' | 'enforceEqualVersions' | 'storeMessages' | 'maxStoredMessages'
>

/** The server's parts a socket meets between its upgrade and its cleanup. */
export interface SocketLifecycleParts {
  /** Prefixes every connection id, so that deliveries find the owner without asking the store. */
  instanceId: string
  /** Connections that received their hello. Shared with the modules that reach them; written only here. */
  live: Map<string, Connection>
  /** Live connections by room and by user: a closing connection leaves both at once. */
  roomIndex: LocalIndex
  userIndex: LocalIndex
  monitor: InstanceMonitor
  authentication: Authentication
  channels: ChannelManager
  registry: CommandRegistry
  messages: MessageRouter
  heartbeat: Heartbeat
  /** `server.use` hooks: client messages are reported here, sends through the connection. */
  hooks: ServerHooks
  logger: Logger
  /** Whether the HTTP server is meshkit's own: then every upgrade on another path is refused. */
  ownsHttp: boolean
  /** The HTTP server, whose other `upgrade` listeners may serve other paths. */
  http: EventEmitter
  /** Which pages' upgrades are let through to authentication. */
  origins: OriginPolicy
  /** Milliseconds a `commandSync` side channel has to attach (`authentication.timeout`). */
  attachTimeout: number
  /** The server's metrics (the no-op ones when off). */
  instruments: Instruments
}

/**
 * Every socket of the server from its HTTP upgrade to its cleanup: authenticated at
 * the upgrade, registered in the store, greeted with the hello, live, its frames
 * routed to commands and pongs, and on close dropped, unregistered and announced
 * gone. `close()` takes them all down when the server closes.
 */
export class SocketLifecycle {
  private readonly wss: WebSocketServer
  /** Every open socket, greeted or not, so that `close()` reaches them all. */
  private readonly sockets = new Set<Connection>()
  private readonly connectListeners = new Set<ConnectionListener>()
  private readonly disconnectListeners = new Set<ConnectionListener>()
  private closing = false
  /** Set by a drain: upgrades are refused (503), but the sockets already here stay until their turn. */
  private draining = false
  /** Told when the last socket is gone (`whenEmpty`). */
  private emptyWaiters: Array<() => void> = []
  /** Store work still running for closed connections; `close()` waits for it. */
  private readonly settling = new Set<Promise<unknown>>()
  /** Absent when `rateLimit` is off, so that the check costs one comparison per frame. */
  private readonly limiter: RateLimiter | undefined
  /** Upgrades past the checks whose authentication is still deciding: they count towards `maxConnections`. */
  private upgrading = 0
  /** Set when `maxConnections` refused an upgrade, so that a full instance warns once rather than per upgrade. */
  private full = false
  /** Second sockets of connections that use `commandSync`; invisible to everything else. */
  private readonly sync: SyncChannels

  constructor(
    private readonly options: SocketLifecycleOptions,
    private readonly parts: SocketLifecycleParts,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxPayload,
      perMessageDeflate: options.perMessageDeflate,
      handleProtocols: pickSubprotocol,
    })
    this.limiter = options.rateLimit ? new RateLimiter(options.rateLimit) : undefined
    this.sync = new SyncChannels(parts.live, (connection, requestId, name, payload, out) => this.onRequest(connection, requestId, name, payload, out), parts.attachTimeout, parts.logger)
    servesPath(this.onUpgrade, options.path)
  }

  /** Called once the client has received its hello. Returns a function that removes the listener. */
  onConnection(listener: ConnectionListener): () => void {
    this.connectListeners.add(listener)
    return () => this.connectListeners.delete(listener)
  }

  /** Called when an announced connection has closed and left its rooms. Returns a function that removes the listener. */
  onDisconnection(listener: ConnectionListener): () => void {
    this.disconnectListeners.add(listener)
    return () => this.disconnectListeners.delete(listener)
  }

  /**
   * Refuses upgrades from now on, closes every socket with 1001 (terminating those
   * still open after `closeTimeout`), waits for their store cleanup, then closes the
   * WebSocket server. Called once, by the server's `close()`.
   */
  async close(): Promise<void> {
    this.closing = true
    const allGone = this.whenEmpty()
    for (const connection of this.sockets) connection.close(CloseCode.GOING_AWAY, 'server shutting down')
    this.sync.close()
    const deadline = setTimeout(() => {
      for (const connection of this.sockets) connection.terminate()
    }, this.options.closeTimeout)
    await allGone
    clearTimeout(deadline)
    await Promise.allSettled([...this.settling])
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
  }

  /** Every open socket, greeted or not: what a drain closes one by one. */
  get all(): ReadonlySet<Connection> {
    return this.sockets
  }

  /** Resolves once no socket is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.emptyWaiters.push(resolve))
  }

  /** A drain began: upgrades get 503 with `Retry-After`, so that clients and load balancers go elsewhere. */
  refuseUpgrades(): void {
    this.draining = true
  }

  /** The HTTP server's `upgrade` listener. */
  readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = pathOf(request.url)
    if (path !== this.options.path) {
      // On a server of the user's, other handlers may own other paths; an upgrade nobody owns would hang.
      if (this.parts.ownsHttp || isUnclaimedUpgrade(this.parts.http, this.onUpgrade, path)) this.refuse(socket, 404, 'Not Found')
      return
    }
    if (this.closing || this.draining) {
      this.refuse(socket, 503, 'Service Unavailable', RETRY_AFTER)
      return
    }
    // A side channel's secret is its authentication: no cookie, and no page of another origin, can present it.
    const sideChannel = syncProtocolOf(request) !== undefined
    // Both before authentication: a foreign page must not learn whether the user's cookie is valid, and a full instance must not pay for checking.
    if (!sideChannel && !this.allowsOrigin(request)) {
      this.refuse(socket, 403, 'Forbidden')
      return
    }
    if (this.sockets.size + this.upgrading + this.sync.size >= this.options.maxConnections) {
      if (!this.full) this.parts.logger.warn?.('maxConnections reached: refusing upgrades with 503', { maxConnections: this.options.maxConnections })
      this.full = true
      this.refuse(socket, 503, 'Service Unavailable')
      return
    }
    // A side channel is bound to a connection that already passed the version check.
    if (sideChannel) {
      this.wss.handleUpgrade(request, socket, head, (ws) => this.sync.accept(ws))
      return
    }
    if (this.options.enforceEqualVersions && !isSameVersion(request)) {
      refuseVersion(this.wss, request, socket, head)
      return
    }
    this.upgrading++
    // A module-level listener: a closure here would share this scope and keep the
    // request and its headers alive for as long as the socket lives.
    socket.on('error', destroySocket)
    this.parts.authentication.atUpgrade(request).then(({ user, status }) => {
      // The upgrade completes synchronously below, so the count moves from `upgrading` to `sockets` in one step.
      this.upgrading--
      if (status !== undefined) this.refuse(socket, status, status === 401 ? 'Unauthorized' : 'Refused')
      // Shutdown began while the authenticator decided: a socket accepted now would outlive close().
      else if (this.closing || this.draining) this.refuse(socket, 503, 'Service Unavailable', RETRY_AFTER)
      else if (!socket.destroyed) {
        this.wss.handleUpgrade(request, socket, head, (ws) => {
          // `ws` listens for the socket's errors from here on; ours would stay on every idle socket for good.
          socket.off('error', destroySocket)
          this.accept(ws, handshakeOf(request), user)
        })
      }
    }, (error: unknown) => {
      this.upgrading--
      this.parts.logger.error?.('upgrade authentication failed', { error })
      this.refuse(socket, 500, 'Internal Server Error')
    })
  }

  /** Every refused upgrade goes through here, so that each is counted. */
  private refuse(socket: Duplex, status: number, text: string, retryAfter?: number): void {
    this.parts.instruments.upgradeRefused(status)
    refuseUpgrade(socket, status, text, retryAfter)
  }

  private allowsOrigin(request: IncomingMessage): boolean {
    try {
      if (this.parts.origins.allows(request)) return true
      this.parts.logger.warn?.('refused an upgrade from another origin (403); see allowedOrigins', { origin: request.headers.origin, host: request.headers.host })
    } catch (error) {
      this.parts.logger.error?.('allowedOrigins function failed; upgrade refused (403)', { origin: request.headers.origin, error })
    }
    return false
  }

  /** One listener for every socket, rather than a closure per connection. */
  private readonly onSocketError = (error: Error): void => this.parts.logger.debug?.('socket error', { error })

  private accept(ws: WebSocket, handshake: Handshake, upgradeUser?: { id: string; value: unknown }): void {
    const codec = codecForSubprotocol(ws.protocol) as Codec
    // Owner-prefixed: nanoid's alphabet has no ".", so the first one ends the instance id.
    const connection = new Connection(ws, `${this.parts.instanceId}.${nanoid()}`, codec, this.options.maxBufferedBytes, handshake)
    this.sockets.add(connection)
    if (this.limiter) connection.rateBucket = this.limiter.bucket()
    connection.hooks = this.parts.hooks
    connection.instruments = this.parts.instruments
    if (this.options.storeMessages) connection.messageLog = new MessageLog(codec, this.options.maxStoredMessages)
    // Nothing is read until the hello is out, so no reply, ping or event can precede it.
    ws.pause()
    ws.on('message', (data, isBinary) => this.onMessage(connection, data, isBinary))
    // Socket errors (resets, bad frames) are followed by 'close', where cleanup happens.
    ws.on('error', this.onSocketError)
    // Registration failing because the store is away does not stop the connection:
    // it is served here and registered when the store is back.
    const announced = this.parts.monitor.register(connection).then(
      (stored) => this.greet(ws, connection, stored, upgradeUser),
      (error: unknown) => {
        this.parts.logger.error?.('could not register connection', { connectionId: connection.id, error })
        connection.close(CloseCode.INTERNAL_ERROR, 'store error')
        return false
      },
    )
    ws.on('close', (code, reason) => {
      connection.closeCode = code
      connection.closeReason = reason.toString()
      this.onClose(connection, announced)
    })
  }

  /** Sends the hello to a registered connection and makes it live; resolves whether it was announced. */
  private async greet(ws: WebSocket, connection: Connection, stored: boolean, upgradeUser?: { id: string; value: unknown }): Promise<boolean> {
    const { authentication, logger } = this.parts
    if (!stored) logger.warn?.('store unavailable; connection served locally for now', { connectionId: connection.id })
    // Identified before the hello, so user sends reach it from its first moment.
    await authentication.accepted(connection, upgradeUser).catch((error: unknown) => {
      logger.warn?.('could not record the connection\'s user', { connectionId: connection.id, error })
      this.parts.monitor.registerLater(connection)
    })
    if (!connection.isOpen || this.closing) return false
    connection.hello({
      maxPayload: this.options.maxPayload,
      pingInterval: this.pingGap,
      // Lets the client hold excess requests itself instead of earning TOO_MANY_REQUESTS; JSON has no Infinity.
      ...(Number.isFinite(this.options.maxPendingRequests) ? { maxPendingRequests: this.options.maxPendingRequests } : {}),
    })
    this.parts.live.set(connection.id, connection)
    this.parts.instruments.connectionOpened()
    ws.resume()
    this.notify(this.connectListeners, connection, 'onConnection')
    return true
  }

  private onClose(connection: Connection, announced: Promise<boolean>): void {
    // Its client may only see 1006: the close frame queued behind what it did not read.
    if (connection.slowConsumer) {
      this.parts.logger.warn?.('closed a slow consumer (4008)', { connectionId: connection.id, maxBufferedBytes: this.options.maxBufferedBytes })
      this.parts.instruments.slowConsumerClosed()
    }
    // Only connections that were greeted count as closed: the others never counted as opened.
    if (this.parts.live.delete(connection.id)) this.parts.instruments.connectionClosed(connection.closeCode ?? 1005)
    // Synchronously with leaving `live`: no broadcast read after this finds it.
    this.parts.roomIndex.removeAll(connection.rooms, connection)
    if (connection.userId !== undefined) this.parts.userIndex.remove(connection.userId, connection)
    this.sockets.delete(connection)
    this.full = false
    this.parts.channels.dropConnection(connection)
    this.sync.dropConnection(connection)
    connection.disposed()
    if (this.sockets.size === 0 && this.emptyWaiters.length > 0) {
      const waiters = this.emptyWaiters
      this.emptyWaiters = []
      for (const resolve of waiters) resolve()
    }
    const cleanup = announced
      .then(async (wasAnnounced) => {
        await this.parts.monitor.unregister(connection)
        if (wasAnnounced) this.notify(this.disconnectListeners, connection, 'onDisconnection')
      })
      .finally(() => this.settling.delete(cleanup))
    this.settling.add(cleanup)
  }

  /** The longest the client may wait between two pings; it announces this in the hello. */
  private get pingGap(): number {
    return Math.min(this.options.pingInterval, this.options.latencyInterval)
  }

  private onMessage(connection: Connection, raw: RawData, isBinary: boolean): void {
    const verdict = this.limiter === undefined ? RateVerdict.PASS : this.limiter.take(connection.rateBucket!)
    if (verdict === RateVerdict.CLOSE) {
      this.closeFlooder(connection)
      return
    }
    const codec = connection.codec
    const decoded = codec.binary && !isBinary ? undefined : tryDecode(codec, raw as Buffer as WireData)
    const frame = parseClientFrame(decoded)
    if (!frame) {
      // A request whose id is readable gets its error on that id, so its caller is not left to time out.
      const requestId = Array.isArray(decoded) && decoded[0] === FrameType.REQUEST && isId(decoded[1]) ? decoded[1] : 0
      connection.respondError(requestId, new MeshError(ErrorCode.BAD_REQUEST, 'Malformed frame'))
      return
    }
    if (frame[0] === FrameType.REQUEST) {
      // Neither run nor answered: the drain's 1012 close tells the client to send it again elsewhere.
      if (connection.draining) return
      if (verdict === RateVerdict.REFUSE) this.refuseRequest(connection, frame[1])
      // Plumbing of `commandSync`, not an application command: no gate, no middleware.
      else if (frame[2] === BuiltinCommand.SYNC_SECRET) this.sync.offer(connection, frame[1], frame[3])
      else this.parts.registry.dispatch(connection, frame[1], frame[2], frame[3])
    }
    // A message over the limit is dropped: it asked for no reply, so there is no id to refuse it on.
    else if (frame[0] === FrameType.MESSAGE) {
      if (verdict === RateVerdict.PASS) {
        connection.messageLog?.received(frame[1], frame[2])
        if (this.parts.hooks.receiving) this.parts.hooks.messageReceived(connection, frame[1], frame[2])
        this.parts.messages.dispatch(connection, frame[1], frame[2])
      } else {
        this.parts.instruments.rateLimited('message')
        this.parts.messages.rateLimited(connection, frame[1])
      }
    }
    // A pong over the limit still counts, but is handled: dropping it could cost a busy
    // but honest client its connection as a missed pong.
    else this.parts.heartbeat.onPong(connection, frame[1])
  }

  /** A request that came on a connection's side channel: rate limited as the connection's own, answered on `out`. */
  private onRequest(connection: Connection, requestId: number, name: string, payload: unknown, out: Replies): void {
    // Not run, as on the connection itself; the side channel's caller fails with CONNECTION_CLOSED when the connection goes.
    if (connection.draining) return
    const verdict = this.limiter === undefined ? RateVerdict.PASS : this.limiter.take(connection.rateBucket!)
    if (verdict === RateVerdict.CLOSE) this.closeFlooder(connection)
    else if (verdict === RateVerdict.REFUSE) this.refuseRequest(out, requestId)
    else this.parts.registry.dispatch(connection, requestId, name, payload, out)
  }

  /** Past `closeAfter`: frames already in flight behind this one find the socket closing and get nothing. */
  private closeFlooder(connection: Connection): void {
    if (!connection.isOpen) return
    this.parts.logger.warn?.('closed a connection over its rate limit (4029)', { connectionId: connection.id })
    this.parts.instruments.rateLimited('disconnect')
    connection.close(CloseCode.RATE_LIMITED, 'rate limit exceeded')
  }

  private refuseRequest(out: Replies, requestId: number): void {
    this.parts.instruments.rateLimited('request')
    out.respondError(requestId, RATE_LIMITED)
  }

  private notify(listeners: Set<ConnectionListener>, connection: Connection, hook: string): void {
    for (const listener of listeners) {
      try {
        const result = listener(connection)
        if (result instanceof Promise) result.catch((error: unknown) => this.reportListenerError(hook, error))
      } catch (error) {
        this.reportListenerError(hook, error)
      }
    }
  }

  private reportListenerError(hook: string, error: unknown): void {
    this.parts.logger.error?.(`${hook} listener failed`, { error })
  }
}

/** Seconds a refused upgrade is told to wait while this instance drains or closes: soon, and (behind a load balancer) elsewhere. */
const RETRY_AFTER = 1

/** One instance for every refusal: a flood should not cost a stack trace per frame. */
const RATE_LIMITED = new MeshError(ErrorCode.TOO_MANY_REQUESTS, 'Rate limit exceeded; slow down', { data: { limit: 'rateLimit' } })

function destroySocket(this: Duplex): void {
  this.destroy()
}
