import {
  ErrorCode,
  MeshClient as CoreMeshClient,
  isMeshError,
  type ChannelCallback,
  type ClientState,
  type ClientUrl,
  type MeshClientOptions as CoreMeshClientOptions,
  type MeshError,
  type SubscribeOptions,
  type SubscribeResult,
} from '../../client/index.js'

/**
 * Mesh's client options. `pingTimeout`, `maxMissedPings`, `shouldReconnect` and
 * `maxReconnectAttempts` mean in meshkit what they meant in Mesh; the others are
 * meshkit's (see docs/api.md) and pass through.
 */
export interface MeshClientOptions extends CoreMeshClientOptions {
  /**
   * ms between reconnect attempts, as in Mesh: no attempt waits longer than this.
   * meshkit spreads attempts with full jitter (a random wait up to this), so a
   * restarted server is not hit by every client in the same millisecond.
   * @default 2000
   */
  reconnectInterval?: number
}

/** What a listener receives: Mesh handed listeners an event whose `detail` is the payload. */
export interface MeshEvent<T = unknown> {
  detail: T
}

/** What `command()` resolves instead of rejecting when the server answered with an error, as Mesh did. */
export interface MeshErrorReply {
  error: string
  code: string
}

/**
 * Failures of the call itself, not answers of the server: Mesh rejected on these
 * (its timeout, its connection errors), so the facade does too.
 */
const TRANSPORT_CODES: ReadonlySet<string> = new Set([
  ErrorCode.TIMEOUT,
  ErrorCode.CONNECTION_CLOSED,
  ErrorCode.CONNECTION_FAILED,
  ErrorCode.VERSION_MISMATCH,
  ErrorCode.ENCODE_ERROR,
  ErrorCode.PAYLOAD_TOO_LARGE,
  ErrorCode.NOT_SUPPORTED,
])

type Listener = (event: MeshEvent<never>) => void

/**
 * Mesh's `MeshClient` on meshkit: `import { MeshClient } from 'meshkit/mesh/client'`.
 * It wraps a meshkit client (`client.core`) rather than extending it, because the
 * core calls its own `command()` for subscriptions and rooms and needs rejections
 * there, while Mesh's `command()` resolves `{ error }`.
 */
export class MeshClient {
  /** The meshkit client underneath, for everything Mesh did not have. */
  readonly core: CoreMeshClient
  private readonly wrappers = new Map<string, Map<Listener, () => void>>()

  constructor(url: ClientUrl, options: MeshClientOptions = {}) {
    const interval = options.reconnectInterval ?? 2_000
    // Mesh retried at a fixed interval; capping meshkit's backoff there keeps every wait within it.
    this.core = new CoreMeshClient(url, { maxReconnectInterval: interval, ...options, reconnectInterval: interval })
  }

  /** Connects; rejects with `CONNECTION_FAILED` when the first attempt fails. */
  connect(): Promise<void> {
    return this.core.connect()
  }

  /**
   * Sends a command and resolves with the reply. An error the server answered with
   * (a handler or middleware threw, an unknown command) resolves as
   * `{ error, code }`, as in Mesh; a timeout or a lost connection rejects.
   */
  command<R = unknown>(name: string, payload?: unknown, timeout?: number): Promise<R | MeshErrorReply> {
    return this.core.command<R>(name, payload, timeout).catch(toReply)
  }

  /** Node only: blocks until the reply, like `command()` but returning it; throws on a timeout or lost connection. */
  commandSync<R = unknown>(name: string, payload?: unknown, timeout?: number): R | MeshErrorReply {
    try {
      return this.core.commandSync<R>(name, payload, timeout)
    } catch (error) {
      return replyOrThrow(error)
    }
  }

  /**
   * Listens to a lifecycle or server event; the listener gets `{ detail }` where
   * `detail` is the payload (`latency`: `{ latency }` in ms, as Mesh sent it).
   * Returns the function that stops listening.
   */
  on<T = unknown>(event: string, listener: (event: MeshEvent<T>) => void): () => void {
    const wrapped = listener as Listener
    // One registration per listener and event, so `off` can always find and remove it.
    if (this.wrappers.get(event)?.has(wrapped)) return () => this.off(event, listener)
    const stop = this.core.on(event, (payload: unknown) => wrapped({ detail: detailOf(event, payload) as never }))
    let byListener = this.wrappers.get(event)
    if (byListener === undefined) this.wrappers.set(event, (byListener = new Map()))
    byListener.set(wrapped, stop)
    return () => this.off(event, listener)
  }

  /** Like `on`, once. */
  once<T = unknown>(event: string, listener: (event: MeshEvent<T>) => void): () => void {
    const stop = this.on<T>(event, (value) => {
      stop()
      listener(value)
    })
    return stop
  }

  /** Stops a listener given to `on`. */
  off<T = unknown>(event: string, listener: (event: MeshEvent<T>) => void): void {
    const byListener = this.wrappers.get(event)
    const stop = byListener?.get(listener as Listener)
    if (stop === undefined || byListener === undefined) return
    byListener.delete(listener as Listener)
    if (byListener.size === 0) this.wrappers.delete(event)
    stop()
  }

  /** Mesh's `removeListener` spelling of `off`. */
  removeListener<T = unknown>(event: string, listener: (event: MeshEvent<T>) => void): void {
    this.off(event, listener)
  }

  /** `{ success, history }`, history newest first; the callback gets messages published afterwards. */
  subscribe<T = unknown>(channel: string, callback: ChannelCallback<T>, options?: SubscribeOptions): Promise<SubscribeResult<T>> {
    return this.core.subscribe<T>(channel, callback, options)
  }

  unsubscribe(channel: string): Promise<boolean> {
    return this.core.unsubscribe(channel)
  }

  /** Closes for good: no reconnect follows. */
  close(): Promise<void> {
    return this.core.close()
  }

  /** This connection's id, as the server's `ctx.connection.id`. */
  get id(): string | undefined {
    return this.core.id
  }

  get state(): ClientState {
    return this.core.state
  }

  /** The last measured round trip in ms. */
  get latency(): number | undefined {
    return this.core.latency
  }
}

function detailOf(event: string, payload: unknown): unknown {
  return event === 'latency' ? { latency: payload } : payload
}

function toReply(error: unknown): MeshErrorReply {
  return replyOrThrow(error)
}

function replyOrThrow(error: unknown): MeshErrorReply {
  if (!isMeshError(error) || TRANSPORT_CODES.has(error.code)) throw error
  return { error: (error as MeshError).message, code: error.code }
}
