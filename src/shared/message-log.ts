import type { Codec, WireData } from './codec.js'

/** One stored message: an event's name or a client message's type, and its data. */
export interface StoredMessage {
  type: string
  data: unknown
}

/** What `storeMessages` kept, oldest first in each list. */
export interface StoredMessages {
  sent: StoredMessage[]
  received: StoredMessage[]
}

/** The newest `capacity` items, in a fixed array: no shifting, no growth past the cap. */
class Ring<T> {
  private readonly items: T[] = []
  private next = 0

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item)
    else this.items[this.next] = item
    this.next = (this.next + 1) % this.capacity
  }

  /** Oldest first. */
  toArray(): T[] {
    if (this.items.length < this.capacity) return this.items.slice()
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)]
  }
}

/**
 * The messages of one connection (`storeMessages`), bounded per direction. Sent
 * messages are kept as the encoded frames that were written: a broadcast's frame is
 * one buffer shared by every recipient's log, and nothing is decoded until someone
 * reads the log. Both directions' frames (an event `[4, name, data, id?]`, a client
 * message `[9, type, data?]`) hold the type at 1 and the data at 2.
 */
export class MessageLog {
  private readonly sentFrames: Ring<WireData>
  private readonly receivedMessages: Ring<StoredMessage>

  constructor(
    private readonly codec: Codec,
    capacity: number,
  ) {
    this.sentFrames = new Ring(capacity)
    this.receivedMessages = new Ring(capacity)
  }

  sent(frame: WireData): void {
    this.sentFrames.push(frame)
  }

  received(type: string, data: unknown): void {
    this.receivedMessages.push({ type, data })
  }

  /** Fresh arrays; sent messages decoded anew, so that a caller cannot change what is stored. Received ones are the values handlers and listeners got. */
  read(): StoredMessages {
    const sent = this.sentFrames.toArray().map((frame) => {
      const decoded = this.codec.decode(frame) as unknown[]
      return { type: decoded[1] as string, data: decoded[2] }
    })
    return { sent, received: this.receivedMessages.toArray() }
  }
}
