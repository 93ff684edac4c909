import { tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { CloseCode, FrameType, PROTOCOL_VERSION, parseServerFrame, type HelloOptions, type ServerFrame } from '../shared/protocol.js'
import { connectionFailed, socketFailure, type SocketFailure } from './connection-failure.js'
import { Transport, type WebSocketConstructor } from './transport.js'
import { PACKAGE_VERSION } from '../shared/version.js'

export interface SocketHandlers {
  /** The socket exists (not yet open): the client can abandon it from now on. */
  onStart(transport: Transport): void
  /** The server's hello arrived and speaks this protocol version: the socket is ready. */
  onHello(transport: Transport, id: string, options: Partial<HelloOptions>): void
  /** A frame after the hello; null for one that could not be decoded or parsed. */
  onFrame(frame: ServerFrame | null): void
  /** The socket ended after the hello (before it, the promise rejects instead). */
  onGone(code: number, reason: string, failure: SocketFailure | undefined): void
}

/**
 * Opens one socket and resolves on the server's hello. Rejects with
 * `CONNECTION_FAILED` and a `ConnectionFailure` as `data` if the socket ends first,
 * if no hello comes within `connectTimeout` ms or if the WebSocket refuses the URL,
 * or with `VERSION_MISMATCH` (the socket is then closed) if the server speaks
 * another protocol version, or closes it with 4009 (`enforceEqualVersions`).
 * Frames before the hello are ignored.
 */
export function openSocket(
  WebSocket: WebSocketConstructor,
  url: string,
  codec: Codec,
  connectTimeout: number,
  handlers: SocketHandlers,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let greeted = false
    let timedOut = false
    let timer: ReturnType<typeof setTimeout> | undefined
    const handlersOfTransport = {
      onData: (data: WireData) => {
        const frame = parseServerFrame(tryDecode(codec, data))
        if (greeted) {
          handlers.onFrame(frame)
          return
        }
        if (frame?.[0] !== FrameType.HELLO) return
        clearTimeout(timer)
        if (frame[1] !== PROTOCOL_VERSION) {
          transport.close(CloseCode.VERSION_MISMATCH, 'protocol version mismatch')
          reject(
            new MeshError(ErrorCode.VERSION_MISMATCH, `Server speaks protocol ${frame[1]}, this client ${PROTOCOL_VERSION}`, {
              data: { server: frame[1], client: PROTOCOL_VERSION },
            }),
          )
          return
        }
        greeted = true
        handlers.onHello(transport, frame[2], frame[3])
        resolve()
      },
      onGone: (code: number, reason: string, failure: SocketFailure | undefined) => {
        clearTimeout(timer)
        if (greeted) handlers.onGone(code, reason, failure)
        // The server enforces equal package versions; its reason is its own version.
        else if (code === CloseCode.VERSION_MISMATCH) reject(packageMismatch(reason))
        else if (timedOut) reject(connectionFailed(url, { reason: 'timeout', timeout: connectTimeout }))
        else reject(connectionFailed(url, socketFailure(failure, code, reason)))
      },
    }
    let transport: Transport
    try {
      transport = Transport.open(WebSocket, url, codec, handlersOfTransport)
    } catch (error) {
      // The WebSocket refuses some URLs at once (a SyntaxError for a malformed one).
      reject(connectionFailed(url, { reason: 'url' }, error))
      return
    }
    timer = setTimeout(() => {
      timedOut = true
      transport.abandon(CloseCode.HEARTBEAT_TIMEOUT, 'no hello from server')
    }, connectTimeout)
    handlers.onStart(transport)
  })
}

function packageMismatch(serverVersion: string): MeshError {
  return new MeshError(ErrorCode.VERSION_MISMATCH, `The server runs meshkit ${serverVersion || '(unknown)'} and accepts only that version; this client is ${PACKAGE_VERSION}`, {
    data: { server: serverVersion, client: PACKAGE_VERSION },
  })
}
