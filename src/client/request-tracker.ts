import type { WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { MAX_REQUEST_ID } from '../shared/protocol.js'
import { Deadlines, type Timed } from './deadlines.js'

/** One request awaiting its reply. */
export class PendingRequest implements Timed {
  readonly reply: Promise<unknown>
  readonly resolve: (value: unknown) => void
  readonly reject: (error: MeshError) => void
  /** Written to the current socket (its frame is then dropped). */
  sent = false
  deadline = 0
  list: Timed['list'] = undefined
  older: Timed | undefined = undefined
  newer: Timed | undefined = undefined

  constructor(
    readonly id: number,
    /** The encoded request, kept until it is answered: a server that closes with 1012 ran none it did not answer, and it is sent again. */
    readonly frame: WireData,
    /** Made for the current socket only: fails when it closes instead of waiting for the next one. */
    readonly bound: boolean,
  ) {
    this.reply = new Promise(captureSettlers)
    this.resolve = capturedResolve!
    this.reject = capturedReject!
  }
}

/** A client message (`client.send`) waiting to be written: no id, no reply, no timeout. */
export class QueuedMessage {
  constructor(readonly frame: WireData) {}
}

// One executor for every request rather than a closure each: the promise constructor
// calls it synchronously, so the settlers are read back at once.
let capturedResolve: ((value: unknown) => void) | undefined
let capturedReject: ((error: MeshError) => void) | undefined
function captureSettlers(resolve: (value: unknown) => void, reject: (error: MeshError) => void): void {
  capturedResolve = resolve
  capturedReject = reject
}

/**
 * Requests awaiting replies. Ids are never reused while a request is pending, so a
 * reply that arrives after its request timed out finds nothing and is dropped
 * instead of answering a newer request.
 *
 * At most `limit` requests are in flight on a socket (the server's
 * `maxPendingRequests`, from its hello); the rest wait here, in order, within their
 * own timeouts. A request that timed out still counts until its late reply
 * arrives or the socket closes, because the server still counts it too.
 */
export class RequestTracker {
  private readonly pending = new Map<number, PendingRequest>()
  /**
   * Requests and client messages not yet written to a socket, oldest first, in one
   * queue so that they leave in the order they were made. Most never wait here:
   * they are written as they are made.
   */
  private readonly queue = new Set<PendingRequest | QueuedMessage>()
  /** Client messages in `queue`. */
  private messages = 0
  /** Pending requests written to the current socket. */
  private sent = 0
  /** Ids of requests written to the current socket that timed out there: the server still runs them. */
  private readonly late = new Set<number>()
  private readonly deadlines = new Deadlines<PendingRequest>((request, timeout) => {
    // Not an answer: a request already written keeps its slot until the server answers it.
    this.take(request.id, false)?.reject(new MeshError(ErrorCode.TIMEOUT, `No reply within ${timeout} ms`))
  })
  /** Requests the server lets one connection have in flight. */
  limit = Infinity

  /**
   * @param lastId the id allocated last; the next one follows it
   * @param maxId the largest id before wrapping to 1 (tests use a small id space)
   */
  constructor(
    private lastId = 0,
    private readonly maxId = MAX_REQUEST_ID,
  ) {}

  get size(): number {
    return this.pending.size
  }

  /** Requests written to the current socket that the server has not answered (timed-out ones included). */
  get inFlightCount(): number {
    return this.sent + this.late.size
  }

  get hasQueued(): boolean {
    return this.queue.size > 0
  }

  /** Client messages waiting to be written. */
  get queuedMessages(): number {
    return this.messages
  }

  /** Queues a client message behind everything already waiting. */
  enqueueMessage(message: QueuedMessage): void {
    this.queue.add(message)
    this.messages++
  }

  /** Drops every waiting client message (the client is closed); returns how many. */
  dropMessages(): number {
    const dropped = this.messages
    for (const item of this.queue) if (item instanceof QueuedMessage) this.queue.delete(item)
    this.messages = 0
    return dropped
  }

  /** Whether a new request may be written at once: none waits before it and the in-flight limit allows another. */
  get mayWriteNow(): boolean {
    return this.queue.size === 0 && this.inFlightCount < this.limit
  }

  /** The id for the next request; throws `TOO_MANY_REQUESTS` when every id is in use. */
  nextId(): number {
    if (this.pending.size + this.late.size >= this.maxId) throw new MeshError(ErrorCode.TOO_MANY_REQUESTS, 'Every request id is in use')
    do {
      this.lastId = this.lastId >= this.maxId ? 1 : this.lastId + 1
    } while (this.pending.has(this.lastId) || this.late.has(this.lastId))
    return this.lastId
  }

  /**
   * Tracks request `id` (from `nextId()`); its `reply` settles on reply, timeout or
   * failure. Unless `written` (it has just been written), it waits to be written,
   * behind earlier ones.
   */
  add(id: number, frame: WireData, timeout: number, bound = false, written = false): PendingRequest {
    const request = new PendingRequest(id, frame, bound)
    this.pending.set(id, request)
    if (written) {
      request.sent = true
      this.sent++
    } else {
      this.queue.add(request)
    }
    this.deadlines.add(request, timeout)
    return request
  }

  /** The server answered `id`. */
  resolve(id: number, value: unknown): void {
    this.take(id, true)?.resolve(value)
  }

  /** Fails request `id`: the server answered with an error, or it never reached the server (too large to send, say). */
  reject(id: number, error: MeshError): void {
    this.take(id, true)?.reject(error)
  }

  /** Marks a queued request or message as written to the socket (or, for a message, dropped). */
  markSent(request: PendingRequest | QueuedMessage): void {
    if (!this.queue.delete(request)) return
    if (request instanceof QueuedMessage) {
      this.messages--
      return
    }
    request.sent = true
    this.sent++
  }

  /** The oldest request or message not yet written; a request only if the in-flight limit allows another. */
  nextSendable(): PendingRequest | QueuedMessage | undefined {
    for (const item of this.queue) return item instanceof QueuedMessage || this.inFlightCount < this.limit ? item : undefined
    return undefined
  }

  /**
   * The socket closed: requests written to it and those made for it reject;
   * unsent ones wait for the next socket, where nothing is in flight yet.
   */
  rejectSent(error: MeshError): void {
    for (const request of [...this.pending.values()]) if (request.sent || request.bound) this.take(request.id, true)?.reject(error)
    this.late.clear()
    if (this.pending.size === 0) this.deadlines.clear()
  }

  /**
   * The socket closed with 1012 (a draining server, which ran none of the requests it
   * did not answer): those written to it wait for the next socket again, ahead of the
   * ones made since, within their own timeouts; those made for that socket only fail.
   */
  requeueSent(error: MeshError): void {
    const again: PendingRequest[] = []
    for (const request of [...this.pending.values()]) {
      if (request.bound) this.take(request.id, true)?.reject(error)
      else if (request.sent) {
        request.sent = false
        this.sent--
        again.push(request)
      }
    }
    // Timed out there, so rejected already; that server will not answer them now.
    this.late.clear()
    if (again.length === 0) return
    const waiting = [...this.queue]
    this.queue.clear()
    for (const item of again) this.queue.add(item)
    for (const item of waiting) this.queue.add(item)
  }

  rejectAll(error: MeshError): void {
    for (const request of [...this.pending.values()]) this.take(request.id, true)?.reject(error)
    this.late.clear()
    this.deadlines.clear()
  }

  private take(id: number, answered: boolean): PendingRequest | undefined {
    const request = this.pending.get(id)
    if (!request) {
      if (answered) this.late.delete(id)
      return undefined
    }
    this.pending.delete(id)
    this.deadlines.remove(request)
    if (!request.sent) this.queue.delete(request)
    else {
      this.sent--
      if (!answered) this.late.add(id)
    }
    return request
  }
}
