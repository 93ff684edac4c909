import { encodeFrame, type Codec, type WireData } from '../shared/codec.js'
import { exceedsBytes } from '../shared/byte-length.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { FrameType, type HelloOptions } from '../shared/protocol.js'
import { QueuedMessage, RequestTracker, type PendingRequest } from './request-tracker.js'
import type { Transport } from './transport.js'

/** Why client messages were dropped: the queue was full, the client closed, or one proved larger than the server accepts. */
export type DropReason = 'overflow' | 'closed' | 'too-large'

/**
 * Requests and client messages on their way to the server: encoded, held while the client may not send
 * (no socket yet, or a reconnected socket still authenticating again), then written
 * in order within the limits the server announced in its hello (`maxPendingRequests`
 * in flight, `maxPayload` bytes each). Requests not yet written outlive a socket;
 * those written to it, and those made for it only (`bound`), fail with it.
 */
export class RequestSender {
  private readonly requests = new RequestTracker()
  private transport: Transport | undefined
  private maxPayload = Infinity
  /** Overflow drops not yet reported. */
  private overflowed = 0

  /**
   * @param mayFlush whether queued requests may go now (the client is open and not re-authenticating)
   * @param maxQueuedMessages client messages that may wait for a socket
   * @param onDropped told of client messages that will never be written
   */
  constructor(
    private readonly codec: Codec,
    private readonly mayFlush: () => boolean,
    private readonly maxQueuedMessages = Infinity,
    private readonly onDropped: (count: number, reason: DropReason) => void = () => {},
  ) {}

  /** The largest request the current server accepts, in bytes (its hello's `maxPayload`). */
  get payloadLimit(): number {
    return this.maxPayload
  }

  /** A socket said hello: requests go to it, within the limits it announced. */
  use(transport: Transport, options: Partial<HelloOptions>): void {
    this.transport = transport
    this.maxPayload = typeof options.maxPayload === 'number' ? options.maxPayload : Infinity
    // A server that announces no limit (an older one, or none set) gets no pacing.
    this.requests.limit = isPositive(options.maxPendingRequests) ? options.maxPendingRequests : Infinity
  }

  /**
   * Queues a request (behind earlier ones and the server's in-flight limit) and sends
   * what may go; an `urgent` one (re-authentication) goes out at once, ahead of all.
   */
  request(name: string, payload: unknown, timeout: number, bound: boolean, urgent = false): Promise<unknown> {
    const requests = this.requests
    let id: number
    let frame: WireData
    try {
      id = requests.nextId()
      frame = encodeFrame(this.codec, [FrameType.REQUEST, id, name, payload])
    } catch (error) {
      return Promise.reject(error)
    }
    // The common case: nothing waits before it and a slot is free, so it is written at
    // once and never queued. A request that cannot go (no socket, too large) takes the queue's path.
    if ((urgent || (requests.mayWriteNow && this.mayFlush())) && this.transport?.isOpen && !exceedsBytes(frame, this.maxPayload)) {
      // Tracked before it is written, so that no reply can come before its request is known.
      const request = requests.add(id, frame, timeout, bound, true)
      this.transport.send(frame)
      return request.reply
    }
    const request = requests.add(id, frame, timeout, bound)
    if (urgent) this.send(request)
    else if (this.mayFlush()) this.flush()
    return request.reply
  }

  /**
   * A client message (an encoded MESSAGE frame): written at once when nothing waits
   * before it, else queued behind what does, so that it keeps its place among
   * requests. False when the queue is full: the message is dropped and reported.
   * Throws `PAYLOAD_TOO_LARGE` when it is larger than the last server's limit.
   */
  message(frame: WireData): boolean {
    if (exceedsBytes(frame, this.maxPayload)) throw tooLarge('message', this.maxPayload)
    const requests = this.requests
    if (!requests.hasQueued && this.mayFlush() && this.transport?.send(frame)) return true
    if (requests.queuedMessages >= this.maxQueuedMessages) {
      this.overflow()
      return false
    }
    requests.enqueueMessage(new QueuedMessage(frame))
    return true
  }

  /**
   * Overflow drops are reported once per turn of the event loop with their count,
   * so that a loop of sends into a full queue raises one report, not thousands.
   */
  private overflow(): void {
    if (this.overflowed++ > 0) return
    queueMicrotask(() => {
      const count = this.overflowed
      this.overflowed = 0
      this.onDropped(count, 'overflow')
    })
  }

  /** The server answered request `id`. */
  resolve(id: number, value: unknown): void {
    this.requests.resolve(id, value)
    this.onSlotFreed()
  }

  /** The server answered request `id` with an error (0: an error not tied to a request). */
  reject(id: number, error: MeshError): void {
    this.requests.reject(id, error)
    this.onSlotFreed()
  }

  /** Sends the queued requests that may go, in order. */
  flush(): void {
    for (let request = this.requests.nextSendable(); request; request = this.requests.nextSendable()) if (!this.send(request)) return
  }

  /**
   * The socket is gone: what was written to it (or made for it) fails; the rest waits
   * for the next one. With `resend` (the server closed with 1012: it ran none of the
   * requests it did not answer) what was written waits too, to be sent again.
   */
  socketGone(error: MeshError, resend = false): void {
    this.transport = undefined
    if (resend) this.requests.requeueSent(error)
    else this.requests.rejectSent(error)
  }

  /** The client is closed: everything still waiting fails, and waiting messages are dropped (and reported). */
  rejectAll(error: MeshError): void {
    this.transport = undefined
    this.requests.rejectAll(error)
    const dropped = this.requests.dropMessages()
    if (dropped > 0) this.onDropped(dropped, 'closed')
  }

  /** A reply freed a slot of the server's in-flight limit: the next queued request may go. */
  private onSlotFreed(): void {
    if (this.requests.hasQueued && this.mayFlush()) this.flush()
  }

  /** Writes a queued request or message; false when the socket could not take it (it stays queued). */
  private send(request: PendingRequest | QueuedMessage): boolean {
    const frame = request.frame
    // Queued before any server announced its limit: the socket would close (1009) on it, losing what follows.
    if (exceedsBytes(frame, this.maxPayload)) {
      if (request instanceof QueuedMessage) {
        this.requests.markSent(request)
        this.onDropped(1, 'too-large')
      } else {
        this.requests.reject(request.id, tooLarge('request', this.maxPayload))
      }
      return true
    }
    if (!this.transport?.send(frame)) return false
    this.requests.markSent(request)
    return true
  }
}

function tooLarge(what: string, limit: number): MeshError {
  return new MeshError(ErrorCode.PAYLOAD_TOO_LARGE, `The ${what} is larger than the server's limit of ${limit} bytes`)
}

function isPositive(value: unknown): value is number {
  return typeof value === 'number' && value > 0
}
