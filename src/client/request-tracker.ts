import type { WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { MAX_REQUEST_ID } from '../shared/protocol.js'

interface Pending {
  readonly resolve: (value: unknown) => void
  readonly reject: (error: MeshError) => void
  readonly timer: ReturnType<typeof setTimeout>
  /** The encoded request; dropped once written to a socket. */
  frame: WireData | undefined
  /** Made for the current socket only: fails when it closes instead of waiting for the next one. */
  readonly bound: boolean
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
  private readonly pending = new Map<number, Pending>()
  /** Ids of requests not yet written to a socket, oldest first. */
  private readonly queue = new Set<number>()
  /** Ids written to the current socket and not yet answered (timed-out ones included). */
  private readonly inFlight = new Set<number>()
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

  /** Requests written to the current socket that the server has not answered. */
  get inFlightCount(): number {
    return this.inFlight.size
  }

  get hasQueued(): boolean {
    return this.queue.size > 0
  }

  /** Allocates an id, then builds the request's frame with it; the promise settles on reply, timeout or failure. */
  create(timeout: number, encode: (id: number) => WireData, bound = false): { id: number; frame: WireData; reply: Promise<unknown> } {
    const id = this.nextId()
    const frame = encode(id)
    const reply = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Not an answer: a request already written keeps its slot until the server answers it.
        this.take(id, false)?.reject(new MeshError(ErrorCode.TIMEOUT, `No reply within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, { resolve, reject, timer, frame, bound })
      this.queue.add(id)
    })
    return { id, frame, reply }
  }

  /** The server answered `id`. */
  resolve(id: number, value: unknown): void {
    this.take(id, true)?.resolve(value)
  }

  /** Fails request `id`: the server answered with an error, or it never reached the server (too large to send, say). */
  reject(id: number, error: MeshError): void {
    this.take(id, true)?.reject(error)
  }

  /** Marks a request as written to the socket. */
  markSent(id: number): void {
    const entry = this.pending.get(id)
    if (!entry) return
    entry.frame = undefined
    this.queue.delete(id)
    this.inFlight.add(id)
  }

  /** Frames of requests not yet written, oldest first, as long as the in-flight limit allows another. */
  *sendable(): Generator<[number, WireData]> {
    for (const id of this.queue) {
      if (this.inFlight.size >= this.limit) return
      const frame = this.pending.get(id)?.frame
      if (frame !== undefined) yield [id, frame]
    }
  }

  /**
   * The socket closed: requests written to it and those made for it reject;
   * unsent ones wait for the next socket, where nothing is in flight yet.
   */
  rejectSent(error: MeshError): void {
    for (const [id, entry] of [...this.pending]) if (entry.frame === undefined || entry.bound) this.take(id, true)?.reject(error)
    this.inFlight.clear()
  }

  rejectAll(error: MeshError): void {
    for (const id of [...this.pending.keys()]) this.take(id, true)?.reject(error)
    this.inFlight.clear()
  }

  private take(id: number, answered: boolean): Pending | undefined {
    if (answered) this.inFlight.delete(id)
    const entry = this.pending.get(id)
    if (!entry) return undefined
    this.pending.delete(id)
    this.queue.delete(id)
    clearTimeout(entry.timer)
    return entry
  }

  private nextId(): number {
    if (this.pending.size + this.inFlight.size >= this.maxId) throw new MeshError(ErrorCode.TOO_MANY_REQUESTS, 'Every request id is in use')
    do {
      this.lastId = this.lastId >= this.maxId ? 1 : this.lastId + 1
    } while (this.pending.has(this.lastId) || this.inFlight.has(this.lastId))
    return this.lastId
  }
}
