import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import { nanoid } from 'nanoid'
import { WebSocketServer, type RawData, type WebSocket } from 'ws'
import { codecForSubprotocol, encodeFrame, tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { CloseCode, FrameType, Subprotocol, isId, parseClientFrame } from '../shared/protocol.js'
import { CommandRegistry } from './command-registry.js'
import { Connection } from './connection.js'
import { requireEventName } from './event-name.js'
import type { CommandHandler, Middleware } from './context.js'
import { Heartbeat } from './heartbeat.js'
import { silentLogger, type Logger } from './logger.js'
import { resolveServerOptions, type MeshServerOptions, type ResolvedServerOptions } from './options.js'
import { MemoryBus } from './store/memory-bus.js'
import { MemoryStore } from './store/memory-store.js'
import type { MeshBus, MeshStore } from './store/types.js'

export type ConnectionListener = (connection: Connection) => void | Promise<void>

const knownSubprotocols = new Set<string>(Object.values(Subprotocol))

/**
 * A meshkit server: accepts WebSocket connections, answers their commands through
 * middleware and handlers, and pushes events to them.
 */
export class MeshServer {
  /** This instance's id, unique among the instances sharing a store. */
  readonly instanceId = nanoid()
  readonly store: MeshStore
  readonly bus: MeshBus
  private readonly options: ResolvedServerOptions
  private readonly logger: Logger
  private readonly http: HttpServer | HttpsServer
  private readonly ownsHttp: boolean
  private readonly wss: WebSocketServer
  private readonly registry: CommandRegistry
  private readonly heartbeat: Heartbeat
  /** Connections that received their hello: the ones events, pings and lookups reach. */
  private readonly live = new Map<string, Connection>()
  /** Every open socket, greeted or not, so that `close()` reaches them all. */
  private readonly sockets = new Set<Connection>()
  private readonly connectListeners = new Set<ConnectionListener>()
  private readonly disconnectListeners = new Set<ConnectionListener>()
  private readonly listening: Promise<void>
  private closing: Promise<void> | undefined
  /** Set while `close()` waits for the last connection to go. */
  private onLastConnectionGone: (() => void) | undefined
  /** Store work still running for closed connections; `close()` waits for it. */
  private readonly settling = new Set<Promise<unknown>>()

  constructor(options: MeshServerOptions = {}) {
    this.options = resolveServerOptions(options)
    this.logger = this.options.logger ?? silentLogger
    this.store = this.options.store ?? new MemoryStore()
    this.bus = this.options.bus ?? new MemoryBus()
    this.registry = new CommandRegistry(this, this.options.maxPendingRequests)
    this.heartbeat = new Heartbeat(this.live, this.options)
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: this.options.maxPayload,
      perMessageDeflate: this.options.perMessageDeflate,
      handleProtocols: pickSubprotocol,
    })
    this.ownsHttp = !this.options.server
    this.http = this.options.server ?? createServer(answerPlainHttp)
    this.http.on('upgrade', this.onUpgrade)
    // A listening server can still fail (accept errors); without a listener that would crash the process.
    if (this.ownsHttp) this.http.on('error', (error) => this.logger.error?.('http server error', { error }))
    this.listening = this.listen()
    // ready() reports a listen failure; without a caller it must not become an unhandled rejection.
    this.listening.catch((error: unknown) => this.logger.error?.('meshkit server failed to listen', { error }))
    this.heartbeat.start()
  }

  /** Resolves once the server accepts connections; rejects if it could not listen. */
  ready(): Promise<void> {
    return this.listening
  }

  /** The port the server listens on (the real one when created with port 0). */
  get port(): number {
    const address = this.http.address()
    return typeof address === 'object' && address ? address.port : this.options.port
  }

  /** Connections held by this instance, by id. */
  get connections(): ReadonlyMap<string, Connection> {
    return this.live
  }

  registerCommand<P = any, R = unknown>(
    name: string,
    handler: CommandHandler<P, R>,
    middleware: readonly Middleware[] = [],
  ): void {
    this.registry.register(name, handler as CommandHandler, middleware)
  }

  /** Middleware for every command, run before the command's own. */
  addMiddleware(...middleware: Middleware[]): void {
    this.registry.addMiddleware(middleware)
  }

  /** Called once the client has received its hello. Returns a function that removes the listener. */
  onConnection(listener: ConnectionListener): () => void {
    this.connectListeners.add(listener)
    return () => this.connectListeners.delete(listener)
  }

  /** Called when a connection that was announced by `onConnection` has closed. */
  onDisconnection(listener: ConnectionListener): () => void {
    this.disconnectListeners.add(listener)
    return () => this.disconnectListeners.delete(listener)
  }

  /** Sends an event to every connection, encoding it once per codec. */
  async broadcast(event: string, payload?: unknown): Promise<void> {
    requireEventName(event)
    const frames = new FrameCache([FrameType.EVENT, event, payload])
    for (const connection of this.live.values()) connection.write(frames.for(connection.codec))
  }

  /** Closes every socket (code 1001, so clients reconnect elsewhere), the timers, and the store. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.heartbeat.stop()
    this.http.off('upgrade', this.onUpgrade)
    const allGone = new Promise<void>((resolve) => {
      if (this.sockets.size === 0) resolve()
      else this.onLastConnectionGone = resolve
    })
    for (const connection of this.sockets) connection.close(CloseCode.GOING_AWAY, 'server shutting down')
    const deadline = setTimeout(() => {
      for (const connection of this.sockets) connection.terminate()
    }, this.options.closeTimeout)
    await allGone
    clearTimeout(deadline)
    await Promise.allSettled([...this.settling])
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
    if (this.ownsHttp && this.http.listening) {
      await new Promise<void>((resolve) => {
        this.http.close(() => resolve())
        this.http.closeAllConnections()
      })
    }
    await Promise.allSettled([this.bus.close(), this.store.close()])
  }

  private listen(): Promise<void> {
    const http = this.http
    if (!this.ownsHttp && http.listening) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => {
        http.off('listening', onListening)
        reject(error)
      }
      const onListening = (): void => {
        http.off('error', onError)
        resolve()
      }
      http.once('error', onError)
      http.once('listening', onListening)
      if (this.ownsHttp) http.listen(this.options.port, this.options.host)
    })
  }

  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (pathOf(request.url) !== this.options.path) {
      // On a server of the user's, other handlers may own other paths.
      if (this.ownsHttp) refuseUpgrade(socket, 404, 'Not Found')
      return
    }
    if (this.closing) {
      refuseUpgrade(socket, 503, 'Service Unavailable')
      return
    }
    socket.on('error', () => socket.destroy())
    this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, request))
  }

  private accept(ws: WebSocket, request: IncomingMessage): void {
    const codec = codecForSubprotocol(ws.protocol) as Codec
    const connection = new Connection(ws, nanoid(), codec, request.socket.remoteAddress, this.options.maxBufferedBytes)
    this.sockets.add(connection)
    // Nothing is read until the hello is out, so no reply, ping or event can precede it.
    ws.pause()
    ws.on('message', (data, isBinary) => this.onMessage(connection, data, isBinary))
    // Socket errors (resets, bad frames) are followed by 'close', where cleanup happens.
    ws.on('error', (error) => this.logger.debug?.('socket error', { connectionId: connection.id, error }))

    let announced = false
    const registered = this.store.addConnection(connection.id, this.instanceId).then(
      () => {
        if (!connection.isOpen || this.closing) return
        connection.hello({ maxPayload: this.options.maxPayload, pingInterval: this.pingGap })
        this.live.set(connection.id, connection)
        ws.resume()
        announced = true
        this.notify(this.connectListeners, connection, 'onConnection')
      },
      (error: unknown) => {
        this.logger.error?.('could not register connection', { connectionId: connection.id, error })
        connection.close(CloseCode.INTERNAL_ERROR, 'store unavailable')
      },
    )

    ws.on('close', () => {
      this.live.delete(connection.id)
      this.sockets.delete(connection)
      connection.disposed()
      if (this.sockets.size === 0) this.onLastConnectionGone?.()
      const cleanup = registered
        .then(() => this.store.removeConnection(connection.id))
        .catch((error: unknown) => this.logger.error?.('could not unregister connection', { connectionId: connection.id, error }))
        .then(() => {
          if (announced) this.notify(this.disconnectListeners, connection, 'onDisconnection')
        })
        .finally(() => this.settling.delete(cleanup))
      this.settling.add(cleanup)
    })
  }

  /** The longest the client may wait between two pings; it announces this in the hello. */
  private get pingGap(): number {
    return Math.min(this.options.pingInterval, this.options.latencyInterval)
  }

  private onMessage(connection: Connection, raw: RawData, isBinary: boolean): void {
    const codec = connection.codec
    const decoded = codec.binary && !isBinary ? undefined : tryDecode(codec, raw as Buffer as WireData)
    const frame = parseClientFrame(decoded)
    if (!frame) {
      // A request whose id is readable gets its error on that id, so its caller is not left to time out.
      const requestId = Array.isArray(decoded) && decoded[0] === FrameType.REQUEST && isId(decoded[1]) ? decoded[1] : 0
      connection.respondError(requestId, new MeshError(ErrorCode.BAD_REQUEST, 'Malformed frame'))
      return
    }
    if (frame[0] === FrameType.REQUEST) this.registry.dispatch(connection, frame[1], frame[2], frame[3])
    else this.heartbeat.onPong(connection, frame[1])
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
    this.logger.error?.(`${hook} listener failed`, { error })
  }
}

/** Encodes one frame at most once per codec, however many connections it goes to. */
class FrameCache {
  private readonly encoded = new Map<Codec, WireData>()

  constructor(private readonly frame: unknown[]) {}

  for(codec: Codec): WireData {
    let data = this.encoded.get(codec)
    if (data === undefined) this.encoded.set(codec, (data = encodeFrame(codec, this.frame)))
    return data
  }
}

function pickSubprotocol(offered: Set<string>): string | false {
  for (const protocol of offered) if (knownSubprotocols.has(protocol)) return protocol
  return false
}

function pathOf(url: string | undefined): string {
  if (!url) return '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

function answerPlainHttp(_request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' })
  response.end('meshkit: this endpoint speaks WebSocket\n')
}
