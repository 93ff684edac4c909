import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import { encodeFrame, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { CloseCode, FrameType, PROTOCOL_VERSION, type HelloOptions } from '../shared/protocol.js'
import { requireEventName } from './call-arguments.js'
import type { RateBucket } from './rate-limiter.js'
import type { Handshake } from './handshake.js'
import type { MessageLog, StoredMessages } from '../shared/message-log.js'
import { errorFrame, responseFrame } from './reply-frames.js'
import type { ServerHooks } from './server-hooks.js'
import { noInstruments, type Instruments } from './instruments.js'
import type { ApiShape, EventArgs, EventName, UntypedApi } from '../shared/api.js'
import { SeldomState } from './seldom-state.js'

const OPEN = 1

/**
 * One client's socket on this instance. Handlers reach it as `ctx.connection`;
 * `send` pushes an event to that client alone, typed by the server's `Api`.
 */
export class Connection<Api extends ApiShape = UntypedApi> {
  /** Unique across instances; the client sees the same value as `client.id`. */
  readonly id: string
  /** The codec negotiated at the upgrade: `msgpack` (binary) or `json` (text). */
  readonly codec: Codec
  /** When the connection was accepted, in milliseconds since the epoch. */
  readonly connectedAt = Date.now()

  private lastLatency: number | undefined
  /** @internal whether writes are being held until the end of this tick */
  corked = false
  private identity: { id: string; user: unknown } | undefined
  private closed = false
  /** Made on the first change of what it holds: an idle connection carries this one field for all of it. */
  private seldom: SeldomState | undefined

  // Most connections never join a room or channel: their sets are made on first use.
  private roomSet: Set<string> | undefined
  private channelSet: Set<string> | undefined

  /** @internal this instance's record of the rooms the connection is in (written back if the store loses it) */
  get rooms(): Set<string> {
    return (this.roomSet ??= new Set())
  }
  /** @internal channels the connection is subscribed to on this instance */
  get channels(): Set<string> {
    return (this.channelSet ??= new Set())
  }
  /** @internal this instance's record of the connection's encoded metadata */
  metadata: string | undefined
  /**
   * @internal how many room changes this instance's record has had, so that a reload
   * of the rooms can tell that its read went stale (a field: a WeakMap entry per
   * connection that ever joined a room cost about 60 bytes more)
   */
  roomChanges = 0

  /** @internal closed (4008) for falling more than `maxBufferedBytes` behind; its client may see 1006 instead */
  get slowConsumer(): boolean {
    return this.seldom?.slowConsumer ?? false
  }
  set slowConsumer(value: boolean) {
    this.more.slowConsumer = value
  }

  /** @internal the `rateLimit` bucket of this connection; absent when the option is off */
  rateBucket: RateBucket | undefined = undefined

  /** @internal set while async middleware decides on a client message: later messages wait for it, to keep their order */
  get messageTail(): Promise<void> | undefined {
    return this.seldom?.messageTail
  }
  set messageTail(value: Promise<void> | undefined) {
    this.more.messageTail = value
  }
  /** @internal client messages waiting behind `messageTail` */
  get waitingMessages(): number {
    return this.seldom?.waitingMessages ?? 0
  }
  set waitingMessages(value: number) {
    this.more.waitingMessages = value
  }
  /** @internal whether this connection was told once that its messages need authentication */
  get messageRefused(): boolean {
    return this.seldom?.messageRefused ?? false
  }
  set messageRefused(value: boolean) {
    this.more.messageRefused = value
  }

  /** The WebSocket close code once the socket closed (1005 when the close frame had none, 1006 when there was no close frame). */
  get closeCode(): number | undefined {
    return this.seldom?.closeCode
  }
  set closeCode(value: number | undefined) {
    this.more.closeCode = value
  }
  /** The close reason once the socket closed (`''` when none). */
  get closeReason(): string | undefined {
    return this.seldom?.closeReason
  }
  set closeReason(value: string | undefined) {
    this.more.closeReason = value
  }

  /** @internal the server's hooks, for the sends made through this connection */
  hooks: ServerHooks | undefined = undefined

  /** @internal the server's metrics, told of every event written */
  instruments: Instruments = noInstruments

  /** @internal the messages kept with `storeMessages`; absent when the option is off */
  messageLog: MessageLog | undefined = undefined

  /**
   * With `storeMessages`: the newest `maxStoredMessages` events written to this
   * connection (`sent`) and client messages it sent (`received`), oldest first, each
   * `{ type, data }`. Fresh arrays on every read (sent ones decoded anew from the
   * bytes written). `undefined` when the option is off.
   */
  get messages(): StoredMessages | undefined {
    return this.messageLog?.read()
  }

  /** @internal requests being handled right now; only `requestDone` lowers it */
  pendingRequests = 0
  /**
   * True once a drain (`server.close({ drain })`) reached this connection: requests
   * arriving from then on are not run (the 1012 close that follows tells the client
   * to send them again elsewhere), and it closes as soon as those running have
   * answered. A long handler may read it to finish early. Only the drain sets it.
   */
  get draining(): boolean {
    return this.seldom?.draining ?? false
  }
  set draining(value: boolean) {
    this.more.draining = value
  }
  /** @internal told when `pendingRequests` falls to 0 (a drain waiting to close the connection) */
  get onIdle(): (() => void) | undefined {
    return this.seldom?.onIdle
  }
  set onIdle(value: (() => void) | undefined) {
    this.more.onIdle = value
  }

  /** @internal a request in flight was answered: called after its reply is written, so that a drain's close frame follows it */
  requestDone(): void {
    if (--this.pendingRequests === 0 && this.onIdle !== undefined) this.onIdle()
  }
  /** @internal liveness bookkeeping, owned by the heartbeat */
  lastPongAt = performance.now()
  /** @internal */
  missedPongs = 0
  /** @internal sequence number and send time of the last ping */
  pingSeq = 0
  /** @internal */
  pingSentAt = 0

  constructor(
    private readonly socket: WebSocket,
    id: string,
    codec: Codec,
    /** @internal bytes that may wait for this reader before it is closed with 4008 */
    readonly maxBufferedBytes: number,
    /** The upgrade's headers, parsed query string and peer address, as they were when the connection opened. */
    readonly handshake: Handshake,
  ) {
    this.id = id
    this.codec = codec
  }

  /** Remote address as the socket saw it when the connection opened (a proxy's, behind one): `handshake.address`. */
  get remoteAddress(): string | undefined {
    return this.handshake.address
  }

  /** The authenticated user's id; `undefined` for an anonymous connection. */
  get userId(): string | undefined {
    return this.identity?.id
  }

  /** The authenticated user, as the authentication step returned it. */
  get user(): unknown {
    return this.identity?.user
  }

  get isAuthenticated(): boolean {
    return this.identity !== undefined
  }

  /** @internal set once authentication succeeded; cleared again if the store refused it */
  identify(id: string, user: unknown): void {
    this.identity = { id, user }
  }

  /** @internal */
  forget(): void {
    this.identity = undefined
  }

  /** @internal an authentication of this connection is being decided (one at a time) */
  get authenticating(): boolean {
    return this.seldom?.authenticating ?? false
  }
  set authenticating(value: boolean) {
    this.more.authenticating = value
  }
  /** @internal an authentication failed with `disconnectOnFail`: no other attempt reaches the handler */
  get authRefused(): boolean {
    return this.seldom?.authRefused ?? false
  }
  set authRefused(value: boolean) {
    this.more.authRefused = value
  }
  /** @internal a user whose store write failed but may still land (a timed-out command runs late): the only user this connection may become */
  get claimedUserId(): string | undefined {
    return this.seldom?.claimedUserId
  }
  set claimedUserId(value: string | undefined) {
    this.more.claimedUserId = value
  }

  /** The seldom-changed state, made on its first change. */
  private get more(): SeldomState {
    return (this.seldom ??= new SeldomState())
  }

  /** @internal closes an unauthenticated connection when authentication is required and late */
  authTimer: ReturnType<typeof setTimeout> | undefined

  /** Last measured round trip to the client in milliseconds; `undefined` until the first pong. */
  get latency(): number | undefined {
    return this.lastLatency
  }

  get isOpen(): boolean {
    return this.socket.readyState === OPEN
  }

  /** True once the socket has closed and the server let go of the connection; it never reopens. */
  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Aborts when the connection closes, so that work done for it (a slow query, a
   * handler waiting on something) can stop: `fetch(url, { signal: ctx.signal })`.
   * The reason is a `MeshError` with code `CONNECTION_CLOSED`.
   */
  get signal(): AbortSignal {
    const state = this.more
    if (!state.abortController) {
      state.abortController = new AbortController()
      if (this.closed) state.abortController.abort(closedReason())
    }
    return state.abortController.signal
  }

  /** Bytes written to this connection that its reader has not taken yet. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount
  }

  /**
   * Sends an event to this client. Returns false when the connection is no longer
   * open; throws `ENCODE_ERROR` for a payload the codec cannot represent.
   */
  send<E extends EventName<Api>>(event: E, ...payload: EventArgs<Api, E>): boolean
  send(event: string, payload?: unknown): boolean {
    requireEventName(event)
    const written = this.writeEvent(encodeFrame(this.codec, [FrameType.EVENT, event, payload]))
    const hooks = this.hooks
    if (hooks !== undefined) {
      if (hooks.sending) hooks.messageSent(this as Connection, { type: event, data: payload, target: 'connection', recipients: written ? 1 : 0, relayed: false })
      if (!written && hooks.undeliverable) hooks.undeliverableSent({ type: event, data: payload }, { userIds: [], connectionIds: [this.id] })
    }
    return written
  }

  /** @internal writes an event frame: every event goes out here, so that `storeMessages` keeps each exactly once */
  writeEvent(data: WireData): boolean {
    const written = this.write(data)
    if (written) {
      this.instruments.eventWritten(data)
      if (this.messageLog !== undefined) this.messageLog.sent(data)
    }
    return written
  }

  /**
   * Closes the connection with a close handshake. With the default 1000 the client
   * treats the session as ended and does not reconnect; 1001 or 1012 make it reconnect.
   */
  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.socket.readyState > OPEN) return
    this.socket.close(code, reason)
  }

  /** Drops the socket at once, without a close handshake (for peers that are gone). */
  terminate(): void {
    this.socket.terminate()
  }

  /**
   * @internal Writes a frame encoded by this connection's codec. Closing a
   * connection whose reader lags keeps the server's memory bounded; the grace
   * period lets a reader that is merely slow see the close code. `batch` false
   * is for a frame that travels alone (a heartbeat's ping, the hello): it is
   * written at once unless the socket is already corked, rather than paying for a
   * cork, a tick callback and a vectored write per idle connection.
   */
  write(data: WireData, batch = true): boolean {
    if (this.socket.readyState !== OPEN) return false
    if (batch && !this.corked) this.cork()
    this.socket.send(data, this.codec.binary ? BINARY : TEXT)
    if (this.socket.bufferedAmount > this.maxBufferedBytes) {
      this.slowConsumer = true
      this.close(CloseCode.SLOW_CONSUMER, 'slow consumer')
      this.more.closingTimer ??= setTimeout(() => this.socket.terminate(), 1_000)
      return false
    }
    return true
  }

  /**
   * Holds this socket's writes until the current turn of the event loop is done,
   * so that a burst of frames (a fan-out, pipelined replies) leaves in one write
   * instead of one system call per frame.
   */
  private cork(): void {
    const raw = this.rawSocket
    if (!raw) return
    this.corked = true
    raw.cork()
    process.nextTick(uncork, this, raw)
  }

  /** The TCP socket under `ws` (its `_socket`, stable across the 8.x line; no public accessor exists). */
  private get rawSocket(): Socket | undefined {
    return (this.socket as unknown as { _socket?: Socket })._socket
  }

  /** @internal */
  hello(options: HelloOptions): void {
    this.write(this.codec.encode([FrameType.HELLO, PROTOCOL_VERSION, this.id, options]), false)
  }

  /** @internal */
  respond(requestId: number, result: unknown): void {
    this.write(responseFrame(this.codec, requestId, result))
  }

  /** @internal */
  respondError(requestId: number, error: MeshError): void {
    this.write(errorFrame(this.codec, requestId, error))
  }

  /** @internal */
  recordLatency(milliseconds: number): void {
    this.lastLatency = milliseconds
    this.write(this.codec.encode([FrameType.LATENCY, milliseconds]), false)
  }

  /** @internal */
  disposed(): void {
    this.closed = true
    if (this.seldom?.closingTimer) clearTimeout(this.seldom.closingTimer)
    if (this.authTimer) clearTimeout(this.authTimer)
    this.seldom?.abortController?.abort(closedReason())
  }
}

/** `ws` copies its send options: one object for every send rather than one per frame. */
const BINARY = Object.freeze({ binary: true })
const TEXT = Object.freeze({ binary: false })

function closedReason(): MeshError {
  return new MeshError(ErrorCode.CONNECTION_CLOSED, 'The connection closed')
}

function uncork(connection: Connection, raw: Socket): void {
  connection.corked = false
  raw.uncork()
}
