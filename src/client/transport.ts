import type { Codec, WireData } from '../shared/codec.js'
import type { SocketFailure } from './connection-failure.js'
import { VERSION_SUBPROTOCOL_PREFIX } from '../shared/protocol.js'
import { PACKAGE_VERSION } from '../shared/version.js'

const VERSION_SUBPROTOCOL = VERSION_SUBPROTOCOL_PREFIX + PACKAGE_VERSION

/** The part of the browser's WebSocket API the client uses; `ws` in Node provides the same. */
export interface SocketLike {
  binaryType: string
  readonly protocol: string
  readonly readyState: number
  readonly bufferedAmount: number
  send(data: WireData): void
  close(code?: number, reason?: string): void
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike

export interface TransportHandlers {
  onData(data: WireData): void
  /**
   * Called once, when the socket is gone (closed, failed, or abandoned as dead), with
   * the HTTP status or system error code `ws` reported, if any.
   */
  onGone(code: number, reason: string, failure: SocketFailure | undefined): void
}

/** The parts of a `ws` socket beyond the browser API; a browser socket has none of them. */
interface WsExtras {
  terminate?: () => void
  on?: (event: 'unexpected-response' | 'message', listener: (...args: never[]) => void) => void
  /** The TCP socket under `ws` (stable across the 8.x line; no public accessor exists). */
  _socket?: Corkable
}

interface Corkable {
  cork(): void
  uncork(): void
}

const OPEN = 1

/** Node (before native WebSocket) uses `ws`, loaded only when needed so browser bundles never pull it in. */
export async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string'
  if (!isNode && typeof globalThis.WebSocket === 'function') {
    return globalThis.WebSocket as unknown as WebSocketConstructor
  }
  const module = (await import('ws')) as unknown as { WebSocket?: WebSocketConstructor; default: WebSocketConstructor }
  return module.WebSocket ?? module.default
}

/** One socket's life: frames in, frames out, and a single report of its end. */
export class Transport {
  private gone = false
  /** The first cause `ws` reported; later errors (such as our own abort) do not replace it. */
  private failure: SocketFailure | undefined
  private markEnded!: () => void
  /** Set while this tick's writes are held, to leave in one system call when it ends. */
  private corked = false
  /** Settles when the socket is gone, however it went. */
  readonly ended = new Promise<void>((resolve) => (this.markEnded = resolve))

  constructor(
    private readonly socket: SocketLike,
    private readonly handlers: TransportHandlers,
  ) {
    const extras = socket as unknown as WsExtras
    // Node buffers avoid a copy per message, but only `ws` knows the value: a browser
    // warns on the console about an invalid enum value for every socket.
    const isWs = typeof extras.terminate === 'function'
    socket.binaryType = isWs ? 'nodebuffer' : 'arraybuffer'
    if (typeof extras.on === 'function') {
      // With a listener ws leaves the refused request to us: note the status, then abort it.
      extras.on.call(socket, 'unexpected-response', (_request: unknown, response: { statusCode?: number }) => {
        this.failure ??= { status: response.statusCode }
        extras.terminate?.call(socket)
      })
    }
    if (isWs && typeof extras.on === 'function') {
      // ws's own event: its `onmessage` first wraps every message in a MessageEvent.
      extras.on.call(socket, 'message', (data: Uint8Array, isBinary: boolean) => {
        if (!this.gone) handlers.onData(isBinary ? data : data.toString())
      })
    } else {
      socket.onmessage = (event) => {
        if (this.gone) return
        const data = event.data
        handlers.onData(data instanceof ArrayBuffer ? new Uint8Array(data) : (data as WireData))
      }
    }
    socket.onclose = (event) => this.end(event.code, event.reason)
    // An error event is always followed by a close event, which reports the end. Only
    // ws attaches the system error (ECONNREFUSED, TLS codes); a browser's event has none.
    socket.onerror = (event) => {
      const code = (event as { error?: { code?: unknown } } | undefined)?.error?.code
      if (typeof code === 'string') this.failure ??= { code }
    }
  }

  /** Offers the codec's subprotocol and, second, this client's package version (for `enforceEqualVersions`). */
  static open(WebSocket: WebSocketConstructor, url: string, codec: Codec, handlers: TransportHandlers): Transport {
    return new Transport(new WebSocket(url, [codec.subprotocol, VERSION_SUBPROTOCOL]), handlers)
  }

  get isOpen(): boolean {
    return !this.gone && this.socket.readyState === OPEN
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount
  }

  send(data: WireData): boolean {
    if (!this.isOpen) return false
    if (!this.corked) this.cork()
    this.socket.send(data)
    return true
  }

  /** Starts a close handshake; the end is reported when the server answers. */
  close(code: number, reason: string): void {
    if (this.gone) return
    try {
      this.socket.close(code, reason)
    } catch {
      this.end(code, reason)
    }
  }

  /** Gives up on a socket at once (a dead peer would never answer a close handshake). */
  abandon(code: number, reason: string): void {
    if (this.gone) return
    this.end(code, reason)
    try {
      // ws can drop the TCP connection outright; a browser socket can only be asked to close.
      const { terminate } = this.socket as WsExtras
      if (terminate) terminate.call(this.socket)
      else this.socket.close(code, reason)
    } catch {
      // A socket still connecting may refuse to close in some implementations.
    }
  }

  /**
   * On `ws`, holds the TCP socket's writes until this turn of the event loop is done:
   * the requests one batch of replies sets off (a caller awaiting each reply before
   * the next, many times over) then leave in one system call instead of one each,
   * which was the largest cost of a request on the client. A browser socket has no
   * such handle, and batches as it sees fit.
   */
  private cork(): void {
    const raw = (this.socket as unknown as WsExtras)._socket
    if (!raw || typeof process === 'undefined') return
    this.corked = true
    raw.cork()
    // One closure per batch of writes, not per write.
    process.nextTick(() => {
      this.corked = false
      raw.uncork()
    })
  }

  /**
   * Writes what is held now rather than at the end of this tick: for a frame that
   * must leave before the thread blocks (`commandSync`), when no tick would end.
   */
  flushNow(): void {
    const raw = (this.socket as unknown as WsExtras)._socket
    if (!this.corked || !raw) return
    this.corked = false
    raw.uncork()
  }

  private end(code: number, reason: string): void {
    if (this.gone) return
    this.gone = true
    this.socket.onmessage = this.socket.onclose = null
    this.markEnded()
    this.handlers.onGone(code, reason, this.failure)
  }
}
