import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { RawData, WebSocket } from 'ws'
import { codecByName, tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { BuiltinCommand, CloseCode, FrameType, SyncSubprotocol, isId, isSyncSecret, parseClientFrame } from '../shared/protocol.js'
import type { Connection } from './connection.js'
import type { Logger } from './logger.js'
import { errorFrame, responseFrame } from './reply-frames.js'

/** Where a request's reply goes: the connection's own socket, or its side channel. */
export interface Replies {
  respond(requestId: number, result: unknown): void
  respondError(requestId: number, error: MeshError): void
}

/** Runs a request of `connection` (rate limit, gate, middleware, handler) and answers it on `out`. */
export type SideDispatch = (connection: Connection, requestId: number, name: string, payload: unknown, out: Replies) => void

const OPEN = 1

/** The side channel subprotocol an upgrade asks for, if any: a plain connection never pays more than this header check. */
export function syncProtocolOf(request: IncomingMessage): string | undefined {
  const offered = request.headers['sec-websocket-protocol']
  if (offered === undefined || !offered.includes('meshkit.sync.')) return undefined
  for (const protocol of offered.split(',')) {
    const name = protocol.trim()
    if (name === SyncSubprotocol.msgpack || name === SyncSubprotocol.json) return name
  }
  return undefined
}

/** One side channel: the socket, and once attached, the connection whose requests it carries. */
class SideChannel implements Replies {
  connection: Connection | undefined
  /** Set once a valid attach request came: it waits for the connection's secret, if that has not arrived yet. */
  waitingFor: Connection | undefined
  presented: Buffer | undefined
  attachId = 0
  timer: ReturnType<typeof setTimeout> | undefined

  constructor(
    readonly ws: WebSocket,
    readonly codec: Codec,
  ) {}

  respond(requestId: number, result: unknown): void {
    this.send(responseFrame(this.codec, requestId, result))
  }

  respondError(requestId: number, error: MeshError): void {
    this.send(errorFrame(this.codec, requestId, error))
  }

  refuse(reason: string): void {
    if (this.ws.readyState <= OPEN) this.ws.close(CloseCode.SIDE_CHANNEL_REFUSED, reason)
  }

  private send(data: WireData): void {
    if (this.ws.readyState === OPEN) this.ws.send(data, { binary: this.codec.binary })
  }
}

/**
 * The side channels of this instance's connections (`client.commandSync` in Node).
 * A client whose thread is blocked cannot read its own socket, so a worker thread of
 * it holds a second socket on which the same connection's requests run: the
 * connection hands a secret over its own socket (`mesh/sync-secret`), the side channel
 * presents it (`mesh/sync-attach`, once), and from then on its requests run as that
 * connection (same `Connection`, so the gate, middleware, user and metadata apply)
 * with the replies written to the side channel. A side channel is no connection: no
 * hello, no `onConnection`, no rooms or store entry; it closes with its connection.
 */
export class SyncChannels {
  /** Digests of secrets offered and not yet used: each attaches one side channel. */
  private readonly secrets = new Map<Connection, Buffer>()
  private readonly attached = new Map<Connection, SideChannel>()
  /** Side channels not attached yet (they count towards `maxConnections` too). */
  private readonly pending = new Set<SideChannel>()

  /**
   * @param attachTimeout how long a side channel may take to attach (the server's
   *   `authentication.timeout`: attaching is its authentication). Its secret travels on
   *   the connection's own socket, which may arrive after the attach request (two TCP
   *   connections, no order between them): the attach waits for it this long.
   */
  constructor(
    private readonly live: ReadonlyMap<string, Connection>,
    private readonly dispatch: SideDispatch,
    private readonly attachTimeout: number,
    private readonly logger: Logger,
  ) {}

  /** Side channels open on this instance. */
  get size(): number {
    return this.pending.size + this.attached.size
  }

  /** `mesh/sync-secret` on the connection's own socket: the secret its next side channel will present. */
  offer(connection: Connection, requestId: number, payload: unknown): void {
    const secret = (payload as { secret?: unknown } | undefined)?.secret
    if (!isSyncSecret(secret)) {
      connection.respondError(requestId, new MeshError(ErrorCode.BAD_REQUEST, 'A side channel secret must be 32 random bytes in base64url'))
      return
    }
    this.secrets.set(connection, digest(secret))
    connection.respond(requestId, true)
    for (const side of this.pending) if (side.waitingFor === connection) this.tryAttach(side, connection)
  }

  /** An upgraded side channel socket: it must attach within `attachTimeout`. */
  accept(ws: WebSocket): void {
    const side = new SideChannel(ws, codecByName(ws.protocol === SyncSubprotocol.json ? 'json' : 'msgpack'))
    this.pending.add(side)
    side.timer = setTimeout(() => side.refuse('not attached in time'), this.attachTimeout)
    ws.on('error', (error) => this.logger.debug?.('side channel socket error', { error }))
    ws.on('message', (data, isBinary) => this.onMessage(side, data, isBinary))
    ws.on('close', () => this.onClose(side))
  }

  /** The connection closed: its side channel goes with it, and its unused secret is forgotten. */
  dropConnection(connection: Connection): void {
    if (this.size === 0 && this.secrets.size === 0) return
    this.secrets.delete(connection)
    const side = this.attached.get(connection)
    if (side) {
      this.attached.delete(connection)
      side.ws.close(CloseCode.NORMAL, 'connection closed')
    }
    for (const waiting of this.pending) if (waiting.waitingFor === connection) waiting.refuse('connection closed')
  }

  /** Server shutdown: every side channel closes (their connections close too, but unattached ones have none). */
  close(): void {
    for (const side of [...this.pending, ...this.attached.values()]) side.ws.close(CloseCode.GOING_AWAY, 'server shutting down')
  }

  private onMessage(side: SideChannel, raw: RawData, isBinary: boolean): void {
    const codec = side.codec
    const decoded = codec.binary && !isBinary ? undefined : tryDecode(codec, raw as Buffer as WireData)
    const frame = parseClientFrame(decoded)
    const connection = side.connection
    if (!connection) {
      // One attach request, then nothing until it is answered.
      if (side.waitingFor) side.refuse('frame before attach')
      else this.attach(side, frame)
      return
    }
    if (frame?.[0] === FrameType.REQUEST) {
      this.dispatch(connection, frame[1], frame[2], frame[3], side)
      return
    }
    // Only requests travel here: client messages and pongs belong to the connection's own socket.
    const requestId = Array.isArray(decoded) && isId(decoded[1]) ? decoded[1] : 0
    side.respondError(frame?.[0] === FrameType.MESSAGE ? 0 : requestId, new MeshError(ErrorCode.BAD_REQUEST, 'A side channel carries requests only'))
  }

  private attach(side: SideChannel, frame: ReturnType<typeof parseClientFrame>): void {
    if (frame?.[0] !== FrameType.REQUEST || frame[2] !== BuiltinCommand.SYNC_ATTACH) return side.refuse('attach first')
    const { connectionId, secret } = (frame[3] ?? {}) as { connectionId?: unknown; secret?: unknown }
    if (typeof connectionId !== 'string' || !isSyncSecret(secret)) return side.refuse('malformed attach')
    // Only the instance holding the connection can run its requests.
    const connection = this.live.get(connectionId)
    if (!connection || connection.isClosed) return side.refuse('no such connection here')
    if (side.codec !== connection.codec) return side.refuse('codec differs from the connection\'s')
    side.waitingFor = connection
    side.presented = digest(secret)
    side.attachId = frame[1]
    this.tryAttach(side, connection)
  }

  /** Attaches if the connection's secret has come; refuses if it differs; else keeps waiting for it. */
  private tryAttach(side: SideChannel, connection: Connection): void {
    const expected = this.secrets.get(connection)
    if (!expected) return
    // Digests of equal length, compared in constant time: the time taken tells nothing about the secret.
    if (!timingSafeEqual(expected, side.presented!)) {
      side.refuse('wrong secret')
      return
    }
    // One use: a secret seen on the wire cannot attach a second channel.
    this.secrets.delete(connection)
    clearTimeout(side.timer)
    this.pending.delete(side)
    side.waitingFor = undefined
    side.connection = connection
    this.attached.get(connection)?.ws.close(CloseCode.NORMAL, 'replaced by a new side channel')
    this.attached.set(connection, side)
    side.respond(side.attachId, true)
  }

  private onClose(side: SideChannel): void {
    clearTimeout(side.timer)
    this.pending.delete(side)
    if (side.connection && this.attached.get(side.connection) === side) this.attached.delete(side.connection)
  }
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}
