import { codecByName, encodeFrame, type Codec } from '../shared/codec.js'
import { Emitter } from '../shared/emitter.js'
import { MessageLog, type StoredMessages } from '../shared/message-log.js'
import { ErrorCode, MeshError, toMeshError } from '../shared/errors.js'
import { BuiltinCommand, CloseCode, FrameType, MAX_MESSAGE_TYPE_BYTES, RESERVED_EVENTS, isMessageType, type HelloOptions, type ServerFrame } from '../shared/protocol.js'
import { backoffDelay } from '../shared/backoff.js'
import type { ApiShape, ChannelMessage, ChannelName, CommandArgs, CommandName, CommandResult, IfUntyped, UntypedApi } from '../shared/api.js'
import type { EventName, EventPayload, MessageArgs, MessageType } from '../shared/api.js'
import { listenerError, nextConnect, type ClientEvents, type ClientState, type JoinRoomOptions, type PresenceEvent, type PresenceMember } from './client-events.js'
import { resolveClientOptions, type MeshClientOptions, type ResolvedClientOptions } from './options.js'
import { openSocket } from './open-socket.js'
import { PingWatchdog } from './ping-watchdog.js'
import { Reauthentication } from './reauthentication.js'
import { RedeliveredMessages } from './redelivered-messages.js'
import { RequestSender, type DropReason } from './request-sender.js'
import { RetryScope } from './retry-scope.js'
import { Subscriptions, type ChannelCallback, type SubscribeOptions, type SubscribeResult } from './subscriptions.js'
import { defaultWebSocket, type Transport } from './transport.js'
import { refusalStatus } from './connection-failure.js'
import { UrlSource, type ClientUrl } from './url-source.js'
import type { SyncCaller } from './sync-caller.js'
import { isNode, loadSyncSupport, newSyncCaller } from './sync-support.js'

const CLOSE_HANDSHAKE_TIMEOUT = 1_000

function notSupported(): MeshError {
  return new MeshError(ErrorCode.NOT_SUPPORTED, 'commandSync needs Node 20.16 or newer (worker threads, Atomics.wait); use command() here')
}
const TERMINAL_CLOSE_CODES = new Set<number>([CloseCode.NORMAL, CloseCode.AUTH_FAILED, CloseCode.AUTH_TIMEOUT])


/**
 * A meshkit client: commands with replies, server events, liveness checks and
 * reconnection. Runs on `ws` in Node and on the native WebSocket in browsers.
 *
 * `Api` types it end to end (`new MeshClient<ChatApi>(url)`, or `typeof api` for an API
 * object made with `defineApi`, imported with `import type`): command names, payloads
 * and results, event payloads, message data and channel messages are checked by the
 * compiler. Without it every name is allowed and every value is `unknown`, as before;
 * the explicit type arguments (`command<R>`, `on<T>`, `subscribe<T>`) then still apply.
 * Types only: nothing of the API exists at run time in the client.
 */
export class MeshClient<Api extends ApiShape = UntypedApi> {
  private readonly urls: UrlSource
  private readonly options: ResolvedClientOptions
  private readonly codec: Codec
  private readonly lifecycle = new Emitter<ClientEvents>((error, event) => this.onListenerError(error, event))
  private readonly serverEvents = new Emitter((error, event) => this.onListenerError(error, event))
  /** Listeners of every server event (`onAnyEvent`); empty for apps that never add one. */
  private readonly anyListeners = new Set<(event: string, payload: unknown) => void>()
  private readonly sender: RequestSender
  private readonly watchdog: PingWatchdog
  // The client's own commands (`mesh/subscribe`...) are none of `Api`'s: called through the untyped signature.
  private readonly subscriptions = new Subscriptions((name, payload) => (this as MeshClient).command(name, payload), {
    recovery: (event) => this.lifecycle.emit('recovery', event),
    rejoin: (event) => this.lifecycle.emit('rejoin', event),
    callbackError: (error) => this.lifecycle.emit('error', toMeshError(error)),
  })
  /** The retries of the current socket; ended when it closes, so none outlives it. */
  private scope: RetryScope | undefined
  private currentState: ClientState = 'idle'
  private transport: Transport | undefined
  private connectionId: string | undefined
  private lastLatency: number | undefined
  private connecting: Promise<void> | undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private wakeReconnect: (() => void) | undefined
  /** The credentials of the last successful `authenticate()`, presented again after every reconnect. */
  private readonly reauthentication = new Reauthentication(
    (event) => this.lifecycle.emit('reauthenticate', event),
    (error) => this.lifecycle.emit('error', error),
  )
  private readonly redelivered = new RedeliveredMessages(
    (ids) => (this as MeshClient).command(BuiltinCommand.ACK, { ids }),
    (event, payload) => this.receiveEvent(event, payload),
  )
  /** Only with `storeMessages`. */
  private readonly log: MessageLog | undefined
  /** Set while a reconnected socket authenticates again: other requests wait until it is done. */
  private resuming = false
  /** Whether `close` was emitted for the current session (reset by `connect()`). */
  private finished = false
  /**
   * Set when the socket dropped without ending the session (not 1000, 4001, 4003): if
   * the client then closes by itself (`reconnectfailed`, `shouldReconnect: false`), the
   * app still wants its channels, rooms and credentials, and the next `connect()`
   * resumes them as a reconnect would. `close()` clears it.
   */
  private resumeOnConnect = false
  /** Made by the first `commandSync` of a session: its worker thread and side channel. */
  private syncCaller: SyncCaller | undefined

  /**
   * @param url the server; or several instances of it: reconnect attempts go round
   *   the list, so a client whose instance dies carries on with another; or a
   *   function (sync or async) called before every attempt, to put a fresh token in
   *   the query string.
   */
  constructor(url: ClientUrl, options: MeshClientOptions = {}) {
    this.urls = new UrlSource(url)
    this.options = resolveClientOptions(options)
    this.codec = codecByName(this.options.codec)
    if (this.options.storeMessages) this.log = new MessageLog(this.codec, this.options.maxStoredMessages)
    this.sender = new RequestSender(this.codec, () => this.currentState === 'open' && !this.resuming, this.options.maxQueuedMessages, (count, reason) =>
      this.reportDropped(count, reason),
    )
    this.watchdog = new PingWatchdog(this.options.pingTimeout, this.options.maxMissedPings, () =>
      this.transport?.abandon(CloseCode.HEARTBEAT_TIMEOUT, 'no ping from server'),
    )
  }

  /** The URL the client connects (or last connected) to; undefined before a `url` function was first called. */
  get url(): string | undefined {
    return this.urls.current
  }

  /** The server's id for the current connection; changes on every reconnect. */
  get id(): string | undefined {
    return this.connectionId
  }

  get state(): ClientState {
    return this.currentState
  }

  /** Last round trip reported by the server, in milliseconds. */
  get latency(): number | undefined {
    return this.lastLatency
  }

  /**
   * Opens the connection and resolves once the server's hello arrived. Rejects with
   * `CONNECTION_FAILED` (its `data` a `ConnectionFailure`: HTTP status, system error
   * code, timeout) if this first attempt fails, or `VERSION_MISMATCH` if the server
   * speaks another protocol version (reconnection covers only connections that were
   * established).
   */
  connect(): Promise<void> {
    if (this.currentState === 'open') return Promise.resolve()
    if (this.connecting) return this.connecting
    if (this.currentState === 'reconnecting') return nextConnect(this.lifecycle)
    this.finished = false
    const resume = this.resumeOnConnect
    this.resuming = resume && this.reauthentication.wanted
    this.setState('connecting')
    this.connecting = this.openSocket().then(
      () => {
        this.connecting = undefined
        if (resume) this.startResume()
      },
      (error: MeshError) => {
        this.connecting = undefined
        this.finish()
        if (error.code === ErrorCode.CONNECTION_FAILED || error.code === ErrorCode.VERSION_MISMATCH) throw error
        throw new MeshError(ErrorCode.CONNECTION_FAILED, `Could not connect to ${this.url ?? 'the server'}: ${error.message}`, {
          cause: error,
        })
      },
    )
    return this.connecting
  }

  /** An untyped client's command: `R` is the result the caller expects (not checked). */
  command<R = unknown>(this: IfUntyped<Api, 'commands'>, name: string, payload?: unknown, timeout?: number): Promise<R>
  /**
   * Sends a command and resolves with the handler's result, or rejects with a
   * `MeshError` (the handler's code, `NOT_FOUND`, `TIMEOUT`, `CONNECTION_CLOSED`...).
   * While reconnecting, the command waits for the new socket within its timeout.
   * With a typed `commands` section: one of its names, its payload (optional when the
   * command takes none), resolving with its result type.
   */
  command<K extends CommandName<Api>>(name: K, ...args: CommandArgs<Api, K>): Promise<CommandResult<Api, K>>
  command(name: string, payload?: unknown, timeout: number = this.options.commandTimeout): Promise<unknown> {
    if (this.currentState === 'idle' || this.currentState === 'closed') {
      return Promise.reject(new MeshError(ErrorCode.CONNECTION_CLOSED, `The client is ${this.currentState}`))
    }
    return this.sender.request(name, payload, timeout, false)
  }

  /** An untyped client's `commandSync`: `R` is the result the caller expects (not checked). */
  commandSync<R = unknown>(this: IfUntyped<Api, 'commands'>, name: string, payload?: unknown, timeout?: number): R
  /**
   * Node only: sends a command and blocks the calling thread until the reply, which it
   * returns, or throws the `MeshError` that `command()` would reject with. It runs on
   * this connection (middleware, authentication and metadata apply), through a worker
   * thread's side channel opened by the first call; nothing else on this thread runs
   * while it waits. Typed as `command()`. See docs/api.md, *Blocking commands*.
   *
   * Throws `NOT_SUPPORTED` outside Node; `CONNECTION_CLOSED` unless the client is open
   * (it cannot wait for a reconnect) or if the connection drops during the call;
   * `TIMEOUT`; `CONNECTION_FAILED` if the side channel could not be opened or was
   * refused; `ENCODE_ERROR`, `PAYLOAD_TOO_LARGE`.
   */
  commandSync<K extends CommandName<Api>>(name: K, ...args: CommandArgs<Api, K>): CommandResult<Api, K>
  commandSync(name: string, payload?: unknown, timeout: number = this.options.commandTimeout): unknown {
    if (!isNode()) throw notSupported()
    const { transport, connectionId, url } = this
    // While re-authenticating, a request would run unauthenticated; the wait for it needs the event loop.
    if (this.currentState !== 'open' || this.resuming || !transport || connectionId === undefined || url === undefined) {
      throw new MeshError(ErrorCode.CONNECTION_CLOSED, `The client is ${this.resuming ? 're-authenticating' : this.currentState}`)
    }
    const caller = (this.syncCaller ??= newSyncCaller())
    if (!caller) throw notSupported()
    try {
      return caller.call(
        {
          connectionId,
          url,
          codec: this.codec,
          maxPayload: this.sender.payloadLimit,
          offerSecret: (secret) => {
            // Failures show on the side channel (refused), which the caller reports.
            this.sender.request(BuiltinCommand.SYNC_SECRET, { secret }, this.options.commandTimeout, true, true).catch(() => {})
            transport.flushNow()
          },
        },
        name,
        payload,
        timeout,
      )
    } finally {
      this.watchdog.resume()
    }
  }

  /**
   * Sends a message the server handles with `onMessage` (fire-and-forget: no reply,
   * no acknowledgement). Messages and commands reach the server in the order they
   * were made. While there is no socket (connecting, reconnecting, re-authenticating)
   * up to `maxQueuedMessages` wait and go out once the session is resumed; returns
   * false for one dropped because the queue is full (reported as an `error` event
   * with code `MESSAGES_DROPPED`). A message written to a socket that then drops is
   * lost: delivery is at most once.
   *
   * Throws `CONNECTION_CLOSED` before `connect()` and after `close()`, `BAD_REQUEST`
   * for a type that is not a non-empty string of at most 255 UTF-8 bytes,
   * `ENCODE_ERROR` for data the codec cannot represent, and `PAYLOAD_TOO_LARGE` for
   * a message larger than the server's `maxPayload`.
   *
   * With a typed `messages` section: one of its types, with its data (optional when
   * `undefined` fits it).
   */
  send<T extends MessageType<Api>>(type: T, ...args: MessageArgs<Api, T>): boolean
  send(type: string, data?: unknown): boolean {
    if (!isMessageType(type)) throw new MeshError(ErrorCode.BAD_REQUEST, `A message type must be a non-empty string of at most ${MAX_MESSAGE_TYPE_BYTES} UTF-8 bytes`)
    if (this.currentState === 'idle' || this.currentState === 'closed') {
      throw new MeshError(ErrorCode.CONNECTION_CLOSED, `The client is ${this.currentState}`)
    }
    // No third element for no data: JSON has no `undefined`, and it would arrive as null.
    const frame = encodeFrame(this.codec, data === undefined ? [FrameType.MESSAGE, type] : [FrameType.MESSAGE, type, data])
    const accepted = this.sender.message(frame)
    // Kept when accepted, not when written: a queued message is written later, once.
    if (accepted && this.log) this.log.sent(frame)
    return accepted
  }

  /**
   * With `storeMessages`: the newest `maxStoredMessages` messages this client sent
   * (`send`) and events it received (each redelivered one once), oldest first, each
   * `{ type, data }`; fresh arrays on every read (sent ones decoded anew from the
   * frames). `undefined` when the option is off.
   */
  get messages(): StoredMessages | undefined {
    return this.log?.read()
  }

  private receiveEvent(event: string, payload: unknown): void {
    this.log?.received(event, payload)
    this.serverEvents.emit(event, payload)
    for (const listener of this.anyListeners) {
      try {
        listener(event, payload)
      } catch (error) {
        this.onListenerError(error, event)
      }
    }
  }

  /**
   * Listens to every event the server sends, whatever its name (not lifecycle events),
   * for layers that dispatch on the name themselves, such as `meshkit/mesa`'s `message`.
   * Returns the function that stops listening.
   */
  onAnyEvent(listener: (event: string, payload: unknown) => void): () => void {
    this.anyListeners.add(listener)
    return () => void this.anyListeners.delete(listener)
  }

  private reportDropped(count: number, reason: DropReason): void {
    this.lifecycle.emit('error', new MeshError(ErrorCode.MESSAGES_DROPPED, `${count} client message(s) dropped (${reason})`, { data: { count, reason } }))
  }

  /** Commands for one socket only: they fail once it is gone, so a retry never leaks onto the next socket. */
  private commandOn(scope: RetryScope, urgent = false): (name: string, payload: unknown) => Promise<unknown> {
    return (name, payload) => {
      if (scope !== this.scope || !scope.active) {
        return Promise.reject(new MeshError(ErrorCode.CONNECTION_CLOSED, 'The socket of this request is gone'))
      }
      return this.sender.request(name, payload, this.options.commandTimeout, true, urgent)
    }
  }

  /** An untyped client's subscription: `T` is the message type the caller expects (not checked). */
  subscribe<T = unknown>(this: IfUntyped<Api, 'channels'>, channel: string, callback: ChannelCallback<T>, options?: SubscribeOptions): Promise<SubscribeResult<T>>
  /**
   * Subscribes to a channel the server exposes. Resolves with the newest
   * `historyLimit` retained messages (newest first); the callback then receives
   * every message published after the subscription, in order, exactly once, also
   * across reconnects (see the `recovery` event). `success: false` when the server
   * does not expose the channel or a guard refuses.
   *
   * With a typed `channels` section: a name it allows (`'chat:*'` allows every
   * `chat:…`), the callback and history typed as that channel's messages.
   */
  subscribe<C extends ChannelName<Api>>(
    channel: C,
    callback: ChannelCallback<ChannelMessage<Api, C>>,
    options?: SubscribeOptions,
  ): Promise<SubscribeResult<ChannelMessage<Api, C>>>
  subscribe(channel: string, callback: ChannelCallback<never>, options?: SubscribeOptions): Promise<SubscribeResult<unknown>> {
    return this.subscriptions.subscribe(channel, callback as ChannelCallback<unknown>, options)
  }

  /** Stops a subscription for good; resolves true if it existed. */
  unsubscribe(channel: ChannelName<Api>): Promise<boolean> {
    return this.subscriptions.unsubscribe(channel)
  }

  /**
   * Joins a room the server exposes to clients; rejoined after every reconnect (with
   * the last presence state set there). Resolves false if refused. With `presence`,
   * joins with that state in a room exposed with presence (`NOT_ENABLED` otherwise).
   */
  joinRoom(room: string, options: JoinRoomOptions = {}): Promise<boolean> {
    return this.subscriptions.joinRoom(room, options.presence)
  }

  /** Sets this client's presence state in a room it joined (a `join` the first time, then `update`s). */
  setPresence(room: string, state: unknown): Promise<void> {
    return this.subscriptions.setPresence(room, state)
  }

  /** The presence list of a room this client is in: `{ connectionId, userId?, state }` per member with a state. */
  async presence<S = unknown>(room: string): Promise<Array<PresenceMember<S>>> {
    return (await (this as MeshClient).command(BuiltinCommand.PRESENCE, { room })) as Array<PresenceMember<S>>
  }

  /** Leaves a room joined with `joinRoom`; resolves true if the client was in it. */
  leaveRoom(room: string): Promise<boolean> {
    return this.subscriptions.leaveRoom(room)
  }

  /**
   * Authenticates this connection (Mesa style); resolves with the user object the
   * server returned (or `{}`), rejects with a `MeshError` on refusal. After every
   * reconnect the client authenticates again with these credentials, before it
   * resumes subscriptions.
   */
  async authenticate<U = unknown>(credentials: unknown): Promise<U> {
    const user = await (this as MeshClient).command<U>(BuiltinCommand.AUTHENTICATE, credentials)
    this.reauthentication.remember(credentials, user)
    return user
  }

  /** The user object of the last successful `authenticate()`. */
  get user(): unknown {
    return this.reauthentication.user
  }

  /** Listens to a lifecycle event; returns the function that stops listening. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void
  /** Listens to the presence changes of the rooms this client is in (see `joinRoom`). */
  on(event: 'presence', listener: (event: PresenceEvent) => void): () => void
  /** An untyped client's server event: `T` is the payload the caller expects (not checked). */
  on<T = unknown>(this: IfUntyped<Api, 'events'>, event: string, listener: (payload: T) => void): () => void
  /**
   * Listens to an event the server sends; returns the function that stops listening.
   * With a typed `events` section: one of its names, the listener getting its payload.
   */
  on<E extends EventName<Api>>(event: E, listener: (payload: EventPayload<Api, E>) => void): () => void
  on(event: string, listener: (payload: never) => void): () => void {
    return (RESERVED_EVENTS.has(event) ? this.lifecycle : this.serverEvents).on(event, listener)
  }

  /** Like `on`, for the next event only. */
  once<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void
  once(event: 'presence', listener: (event: PresenceEvent) => void): () => void
  once<T = unknown>(this: IfUntyped<Api, 'events'>, event: string, listener: (payload: T) => void): () => void
  once<E extends EventName<Api>>(event: E, listener: (payload: EventPayload<Api, E>) => void): () => void
  once(event: string, listener: (payload: never) => void): () => void {
    return (RESERVED_EVENTS.has(event) ? this.lifecycle : this.serverEvents).once(event, listener)
  }

  /** Closes the connection for good: no reconnect follows. Pending commands reject with `CONNECTION_CLOSED`. */
  async close(): Promise<void> {
    this.resumeOnConnect = false
    // Acknowledged before the close frame, so the next session is not sent them again.
    if (this.currentState === 'open') this.redelivered.flush()
    this.endSession()
    const previous = this.currentState
    this.setState('closed')
    if (previous === 'idle' || previous === 'closed') return
    this.scope?.end()
    clearTimeout(this.reconnectTimer)
    this.wakeReconnect?.()
    const transport = this.transport
    if (previous === 'open' && transport?.isOpen) {
      // A polite close handshake, but a server that does not answer is not waited for.
      transport.close(CloseCode.NORMAL, 'client closed')
      const timer = setTimeout(() => transport.abandon(CloseCode.NORMAL, 'client closed'), CLOSE_HANDSHAKE_TIMEOUT)
      await transport.ended
      clearTimeout(timer)
    } else {
      transport?.abandon(CloseCode.NORMAL, 'client closed')
    }
    this.finish()
  }

  /**
   * A listener of the application threw: reported as an `error` event, never thrown
   * into our state transitions or left to end the process. One thrown by an `error`
   * listener is dropped, since reporting it would call the same listener again.
   */
  private onListenerError(error: unknown, event: string): void {
    if (event !== 'error') this.lifecycle.emit('error', listenerError(error, event))
  }

  private setState(next: ClientState): void {
    this.currentState = next
  }

  /** Opens one socket and resolves on the server's hello; rejects if it ends or times out first. */
  private async openSocket(): Promise<void> {
    const loading = loadSyncSupport()
    if (loading) await loading
    const WebSocket = this.options.WebSocket ?? (await defaultWebSocket())
    const url = await this.urls.resolve()
    if (this.currentState === 'closed') throw new MeshError(ErrorCode.CONNECTION_CLOSED, 'The client was closed')
    return openSocket(WebSocket, url, this.codec, this.options.connectTimeout, {
      onStart: (transport) => (this.transport = transport),
      onHello: (transport, id, options) => this.onHello(transport, id, options),
      onFrame: (frame) => this.onFrame(frame),
      onGone: (code, reason) => this.onSocketGone(code, reason),
    })
  }

  private onHello(transport: Transport, id: string, options: Partial<HelloOptions>): void {
    this.transport = transport
    this.connectionId = id
    this.sender.use(transport, options)
    this.scope?.end()
    this.scope = new RetryScope(this.options.reconnectInterval, this.options.maxReconnectInterval)
    this.watchdog.start(typeof options.pingInterval === 'number' ? options.pingInterval : 0)
    this.setState('open')
    if (!this.resuming) this.sender.flush()
    this.lifecycle.emit('connect', { id })
  }

  private onFrame(frame: ServerFrame | null): void {
    if (!frame) {
      this.lifecycle.emit('error', new MeshError(ErrorCode.BAD_REQUEST, 'The server sent a malformed frame'))
      return
    }
    switch (frame[0]) {
      case FrameType.RESPONSE:
        this.sender.resolve(frame[1], frame[2])
        return
      case FrameType.ERROR: {
        const error = new MeshError(frame[2], frame[3], { data: frame[4] })
        if (frame[1] === 0) this.lifecycle.emit('error', error)
        this.sender.reject(frame[1], error)
        return
      }
      case FrameType.EVENT:
        if (frame[3] === undefined) this.receiveEvent(frame[1], frame[2])
        // After close() it could no longer be acknowledged: left for the next session, not shown twice.
        else if (this.currentState !== 'closed') this.redelivered.receive(frame[1], frame[2], frame[3])
        return
      case FrameType.PING:
        this.transport?.send(this.codec.encode([FrameType.PONG, frame[1]]))
        this.watchdog.onPing()
        this.lifecycle.emit('ping')
        return
      case FrameType.LATENCY:
        this.lastLatency = frame[1]
        this.lifecycle.emit('latency', frame[1])
        return
      case FrameType.CHANNEL:
        this.subscriptions.onMessage(frame[1], frame[2], frame[3])
        return
      case FrameType.HELLO:
        return
    }
  }

  /**
   * After a reconnect: authenticate again first (requests issued meanwhile wait, so
   * none runs unauthenticated), then resume channels and rooms. All of it is retried
   * on transient failures within the socket's scope; a drop ends the scope, and the
   * next socket's session starts over.
   */
  private async resumeSession(scope: RetryScope): Promise<void> {
    await this.reauthentication.run(scope, this.commandOn(scope, true))
    if (scope !== this.scope || !scope.active) return
    this.resuming = false
    this.sender.flush()
    await this.subscriptions.replay(scope, this.commandOn(scope))
  }

  /** Resumes the session on the socket that just said hello, in the background. */
  private startResume(): void {
    this.resumeSession(this.scope!).catch((error: unknown) => this.lifecycle.emit('error', toMeshError(error)))
  }

  /**
   * The session is over (`close()`, or the server ended it): a later `connect()` starts
   * a new, anonymous one. Nothing is resumed for it, a `subscribe()` does not meet
   * `ALREADY_SUBSCRIBED`, and message ids seen (another user's could be equal) are forgotten.
   */
  private endSession(): void {
    this.subscriptions.clear()
    this.reauthentication.forget()
    this.redelivered.reset()
  }

  private onSocketGone(code: number, reason: string): void {
    // First, so that retries failing below see their scope ended and stop.
    this.scope?.end()
    this.watchdog.stop()
    this.transport = undefined
    this.connectionId = undefined
    this.sender.socketGone(new MeshError(ErrorCode.CONNECTION_CLOSED, 'The connection closed before the reply arrived'))
    this.lifecycle.emit('disconnect', { code, reason })
    // These end the session on purpose (1000) or would only repeat (authentication); an outage does not.
    const wasOpen = this.currentState === 'open'
    const ended = TERMINAL_CLOSE_CODES.has(code)
    if (wasOpen) {
      this.resumeOnConnect = !ended
      if (ended) this.endSession()
    }
    if (wasOpen && !ended && this.options.shouldReconnect) void this.reconnect()
    else if (this.currentState !== 'closed') this.finish()
  }

  private async reconnect(): Promise<void> {
    this.setState('reconnecting')
    const { reconnectInterval, maxReconnectInterval, maxReconnectAttempts } = this.options
    let attemptsMade = 0
    let lastError: MeshError | undefined
    let status: number | undefined
    for (let attempt = 1; attempt <= maxReconnectAttempts; attempt++) {
      attemptsMade = attempt
      await new Promise<void>((resolve) => {
        this.wakeReconnect = resolve
        this.reconnectTimer = setTimeout(resolve, backoffDelay(attempt, reconnectInterval, maxReconnectInterval))
      })
      this.wakeReconnect = undefined
      if (this.currentState !== 'reconnecting') return
      this.urls.rotate()
      this.resuming = this.reauthentication.wanted
      try {
        await this.openSocket()
        this.lifecycle.emit('reconnect', { attempt })
        this.startResume()
        return
      } catch (thrown) {
        if (this.currentState !== 'reconnecting') return
        lastError = toMeshError(thrown)
        this.lifecycle.emit('error', lastError)
        // The error listener may have called close().
        if (this.currentState !== 'reconnecting') return
        // Another attempt would meet the same server version, or the same refusal of these credentials.
        status = refusalStatus(lastError)
        if (lastError.code === ErrorCode.VERSION_MISMATCH || status !== undefined) break
      }
    }
    this.lifecycle.emit('reconnectfailed', { attempts: attemptsMade, ...(status && { status }), ...(lastError && { error: lastError }) })
    this.finish()
  }

  /** The end of the client: everything still waiting is rejected, `close` is emitted once. */
  private finish(): void {
    this.scope?.end()
    this.watchdog.stop()
    clearTimeout(this.reconnectTimer)
    this.transport = undefined
    this.connectionId = undefined
    this.setState('closed')
    this.sender.rejectAll(new MeshError(ErrorCode.CONNECTION_CLOSED, 'The client is closed'))
    this.syncCaller?.close()
    this.syncCaller = undefined
    if (this.finished) return
    this.finished = true
    this.lifecycle.emit('close')
  }
}
