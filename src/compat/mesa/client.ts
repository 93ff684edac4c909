import { EventEmitter } from 'node:events'
import { MeshClient, type MeshClientOptions } from '../../client/index.js'
import { ErrorCode, MeshError } from '../../index.js'
import { CONFIG_EVENT, type AdvertisedConfig } from './mesa-options.js'
import { Message, toMessages, wireType, type Messages } from './message.js'

/** Mesa's client configuration. */
export interface ClientOptions {
  /** Connect from the constructor; off, call `connect()`. @default true */
  autoConnect?: boolean
  /** Options for the meshkit client underneath (not in Mesa); `shouldReconnect` and `storeMessages` are the facade's. @default {} */
  mesh?: Omit<MeshClientOptions, 'shouldReconnect' | 'storeMessages'>
}

/** Mesa's `client.authenticate(data, config)` options. */
export interface AuthenticateOptions {
  /** Only `true` is supported: meshkit always redelivers kept messages on authentication. @default true */
  shouldSync?: boolean
}

/** Close codes after which Mesa clients would only be refused again (meshkit's terminal codes). */
const TERMINAL = new Set([1000, 4001, 4003, 4009])

/**
 * Mesa's client on meshkit's: `connected`, `message`, `disconnected` events and
 * `Message`s. Reconnection follows what the server advertises (Mesa's `reconnect`
 * option): a fixed interval between attempts, each a meshkit `connect()` that
 * resumes the session (authentication, redelivery) as meshkit's own reconnect does.
 */
export class Client extends EventEmitter {
  readonly url: string
  /** The meshkit client doing the work. */
  readonly mesh: MeshClient
  private config: AdvertisedConfig | undefined
  private forced = false
  private everConnected = false
  private sessionStart = true
  private automatic = false
  private retryTimer: ReturnType<typeof setTimeout> | undefined

  constructor(url: string, options: ClientOptions = {}) {
    super()
    this.url = url
    // Kept always (bounded by maxStoredMessages) since the server only says on connecting whether it wants them.
    this.mesh = new MeshClient(url, { ...options.mesh, shouldReconnect: false, storeMessages: true })
    this.mesh.on('connect', () => this.onConnect())
    this.mesh.on('disconnect', ({ code, reason }) => this.onDisconnect(code, reason))
    this.mesh.on('error', (error) => this.safeEmit('error', error))
    this.mesh.on('reauthenticate', (event) => (this.authenticated = event.authenticated))
    this.mesh.on(CONFIG_EVENT, (config: AdvertisedConfig) => (this.config = config))
    this.mesh.onAnyEvent((type, data) => {
      if (type !== CONFIG_EVENT) this.safeEmit('message', new Message(0, data, type))
    })
    if (options.autoConnect ?? true) this.connect().catch(() => undefined)
  }

  /** Whether the last `authenticate()` succeeded on this session. */
  authenticated = false

  /** With the server's `options.storeMessages`, `{ sent, received }`; undefined otherwise. */
  get messages(): Messages | undefined {
    const stored = this.mesh.messages
    return this.config?.storeMessages && stored ? toMessages(stored, CONFIG_EVENT) : undefined
  }

  /** Connects; rejects with meshkit's `CONNECTION_FAILED` (the `error` event reports it too). */
  async connect(): Promise<void> {
    clearTimeout(this.retryTimer)
    this.forced = false
    await this.mesh.connect()
  }

  /** Sends a message to the server's `message` listeners (queued while reconnecting). */
  send(message: Message<unknown>): boolean {
    return this.mesh.send(wireType(message), message.data)
  }

  /** Authenticates with the server's `client.authenticate` handler; resolves with the user object. */
  async authenticate<U = unknown>(data: unknown, options: AuthenticateOptions = {}): Promise<U> {
    if (options.shouldSync === false) {
      throw new MeshError(ErrorCode.NOT_SUPPORTED, 'shouldSync: false is not supported on meshkit: kept messages are always redelivered')
    }
    const user = await this.mesh.authenticate<U>(data)
    this.authenticated = true
    return user
  }

  /** Closes for good: no reconnect follows (Mesa's forced disconnect). */
  async disconnect(): Promise<void> {
    this.forced = true
    clearTimeout(this.retryTimer)
    await this.mesh.close()
  }

  private onConnect(): void {
    const options = {
      isInitialConnection: !this.everConnected,
      isInitialSessionConnection: this.sessionStart,
      isAutomaticReconnection: this.automatic,
    }
    this.everConnected = true
    this.sessionStart = false
    this.automatic = false
    this.safeEmit('connected', options)
    // Mesa's README and guides listen to `connection`; its client emitted `connected`.
    this.safeEmit('connection', options)
  }

  private onDisconnect(code: number, reason: string): void {
    const interval = this.config?.reconnectInterval
    const willAttemptReconnect = interval !== undefined && !this.forced && !TERMINAL.has(code)
    this.authenticated = false
    if (this.forced || TERMINAL.has(code)) this.sessionStart = true
    this.safeEmit('disconnected', code, reason, { willAttemptReconnect })
    if (willAttemptReconnect) this.scheduleReconnect(interval)
  }

  private scheduleReconnect(interval: number): void {
    this.retryTimer = setTimeout(() => {
      if (this.forced) return
      this.automatic = true
      this.mesh.connect().then(
        () => undefined,
        () => this.scheduleReconnect(interval),
      )
    }, interval)
  }

  /** Listener faults are reported, never thrown into meshkit; `error` with no listener is dropped (it would throw). */
  private safeEmit(event: string, ...args: unknown[]): void {
    if (event === 'error' && this.listenerCount('error') === 0) return
    try {
      this.emit(event, ...args)
    } catch (error) {
      if (event !== 'error' && this.listenerCount('error') > 0) this.emit('error', error)
    }
  }
}
