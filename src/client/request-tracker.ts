import type { WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { MAX_REQUEST_ID } from '../shared/protocol.js'

interface Pending {
  readonly resolve: (value: unknown) => void
  readonly reject: (error: MeshError) => void
  readonly timer: ReturnType<typeof setTimeout>
  /** The encoded request; dropped once written to a socket. */
  frame: WireData | undefined
}

/**
 * Requests awaiting replies. Ids are never reused while a request is pending, so a
 * reply that arrives after its request timed out finds nothing and is dropped
 * instead of answering a newer request.
 */
export class RequestTracker {
  private readonly pending = new Map<number, Pending>()

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

  /** Allocates an id, then builds the request's frame with it; the promise settles on reply, timeout or failure. */
  create(timeout: number, encode: (id: number) => WireData): { id: number; frame: WireData; reply: Promise<unknown> } {
    const id = this.nextId()
    const frame = encode(id)
    const reply = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reject(id, new MeshError(ErrorCode.TIMEOUT, `No reply within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, { resolve, reject, timer, frame })
    })
    return { id, frame, reply }
  }

  resolve(id: number, value: unknown): void {
    const entry = this.take(id)
    entry?.resolve(value)
  }

  reject(id: number, error: MeshError): void {
    const entry = this.take(id)
    entry?.reject(error)
  }

  /** Marks a request as written to the socket. */
  markSent(id: number): void {
    const entry = this.pending.get(id)
    if (entry) entry.frame = undefined
  }

  /** Frames of requests not yet written to any socket, oldest first. */
  *unsent(): Generator<[number, WireData]> {
    for (const [id, entry] of this.pending) if (entry.frame !== undefined) yield [id, entry.frame]
  }

  /** Rejects the requests that were written to a socket (it closed); unsent ones wait for the next socket. */
  rejectSent(error: MeshError): void {
    for (const [id, entry] of this.pending) if (entry.frame === undefined) this.reject(id, error)
  }

  rejectAll(error: MeshError): void {
    for (const id of [...this.pending.keys()]) this.reject(id, error)
  }

  private take(id: number): Pending | undefined {
    const entry = this.pending.get(id)
    if (!entry) return undefined
    this.pending.delete(id)
    clearTimeout(entry.timer)
    return entry
  }

  private nextId(): number {
    if (this.pending.size >= this.maxId) throw new MeshError(ErrorCode.TOO_MANY_REQUESTS, 'Every request id is in use')
    do {
      this.lastId = this.lastId >= this.maxId ? 1 : this.lastId + 1
    } while (this.pending.has(this.lastId))
    return this.lastId
  }
}
