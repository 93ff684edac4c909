import { tryDecode, type Codec } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { CloseCode, FrameType, PROTOCOL_VERSION, parseServerFrame, type HelloOptions, type ServerFrame } from '../shared/protocol.js'
import { Transport, type WebSocketConstructor } from './transport.js'

export interface SocketHandlers {
  /** The socket exists (not yet open): the client can abandon it from now on. */
  onStart(transport: Transport): void
  /** The server's hello arrived and speaks this protocol version: the socket is ready. */
  onHello(transport: Transport, id: string, options: Partial<HelloOptions>): void
  /** A frame after the hello; null for one that could not be decoded or parsed. */
  onFrame(frame: ServerFrame | null): void
  /** The socket ended after the hello (before it, the promise rejects instead). */
  onGone(code: number, reason: string): void
}

/**
 * Opens one socket and resolves on the server's hello. Rejects if the socket ends
 * first, if no hello comes within `connectTimeout` ms, or with `VERSION_MISMATCH`
 * (the socket is then closed) if the server speaks another protocol version.
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
    let timer: ReturnType<typeof setTimeout> | undefined
    // Transport.open throws at once for a URL the WebSocket refuses; the promise then rejects.
    const transport = Transport.open(WebSocket, url, codec, {
      onData: (data) => {
        const frame = parseServerFrame(tryDecode(codec, data))
        if (greeted) {
          handlers.onFrame(frame)
          return
        }
        if (frame?.[0] !== FrameType.HELLO) return
        clearTimeout(timer)
        if (frame[1] !== PROTOCOL_VERSION) {
          transport.close(CloseCode.VERSION_MISMATCH, 'protocol version mismatch')
          reject(new MeshError(ErrorCode.VERSION_MISMATCH, `Server speaks protocol ${frame[1]}, this client ${PROTOCOL_VERSION}`))
          return
        }
        greeted = true
        handlers.onHello(transport, frame[2], frame[3])
        resolve()
      },
      onGone: (code, reason) => {
        clearTimeout(timer)
        if (greeted) handlers.onGone(code, reason)
        else reject(new MeshError(ErrorCode.CONNECTION_CLOSED, reason || `Socket closed with code ${code}`))
      },
    })
    timer = setTimeout(() => {
      transport.abandon(CloseCode.HEARTBEAT_TIMEOUT, 'no hello from server')
    }, connectTimeout)
    handlers.onStart(transport)
  })
}
