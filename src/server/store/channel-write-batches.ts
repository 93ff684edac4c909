import { ErrorCode, MeshError } from '../../shared/errors.js'

/** One channel write waiting for its batch: the message's bytes and the history limit its caller asked for. */
export interface ChannelWrite {
  readonly message: Buffer
  readonly historyLimit: number
}

interface PendingWrite extends ChannelWrite {
  resolve(offset: number): void
  reject(error: unknown): void
}

/** The store steps a channel's writes leave as; each is atomic and gives consecutive offsets in order. */
export interface ChannelWriteSteps {
  /** One write; resolves with its offset. */
  one(channel: string, message: Uint8Array, historyLimit: number): Promise<number>
  /** Several writes, in order; resolves with the offset of the last (the others precede it by one each), or rejects for all of them. */
  batch(channel: string, writes: readonly ChannelWrite[]): Promise<number>
}

/** How large one batch may grow. */
export interface ChannelWriteBatchesOptions {
  /** Most messages in one batch. @default 256 */
  maxMessages: number
  /** Most message bytes in one batch; a larger message goes alone. @default 1048576 */
  maxBytes: number
}

export const channelWriteBatchesDefaults: ChannelWriteBatchesOptions = {
  maxMessages: 256,
  maxBytes: 1_048_576,
}

/**
 * Gathers concurrent writes to a channel into batches. One step per channel is at
 * the store at a time, so the order of calls is the order of offsets whatever the
 * transport does with concurrent commands (a cluster's redirections included);
 * different channels' steps go out side by side.
 *
 * A write to a channel with nothing at the store leaves at once, alone, as the
 * single-write step: one awaited writer, or writers spread over many channels, pay
 * only this bookkeeping for batching, 1–2 µs per write (sent as a batch of one, a
 * microtask later, through the batch script, such a write cost the server 15–30 %
 * more CPU). Writes made while a channel's step is at the store wait for it, then
 * leave together as one batch with consecutive offsets in call order. Each caller
 * gets its own offset, or its step's error; a step that failed with UNAVAILABLE also
 * fails the writes waiting behind it, with the same error.
 */
export class ChannelWriteBatches {
  /** Channels with a step at the store, and the writes waiting for it, in call order. */
  private readonly waiting = new Map<string, PendingWrite[]>()
  private readonly options: ChannelWriteBatchesOptions

  constructor(
    private readonly steps: ChannelWriteSteps,
    options: Partial<ChannelWriteBatchesOptions> = {},
  ) {
    this.options = { ...channelWriteBatchesDefaults, ...options }
  }

  write(channel: string, message: Uint8Array, historyLimit: number): Promise<number> {
    const waiting = this.waiting.get(channel)
    if (waiting) {
      // A copy: the caller's bytes may be a view of a buffer its encoder reuses before the batch leaves.
      const bytes = Buffer.from(message)
      return new Promise((resolve, reject) => waiting.push({ message: bytes, historyLimit, resolve, reject }))
    }
    const queue: PendingWrite[] = []
    this.waiting.set(channel, queue)
    const sent = attempt(() => this.steps.one(channel, message, historyLimit))
    // Registered before the caller's own reaction: the writes that waited leave first.
    sent.then(
      () => this.settled(channel, queue),
      (error: unknown) => this.settled(channel, queue, error),
    )
    return sent
  }

  /** The channel's step is answered: the writes that waited for it leave next, or the channel is idle. */
  private settled(channel: string, queue: PendingWrite[], error?: unknown): void {
    // Without Redis (down, or no reply within the timeout) the writes waiting behind
    // fail now: each caller hears within one timeout, as when every write was its own
    // call. None of them was sent, so none was written.
    if (error instanceof MeshError && error.code === ErrorCode.UNAVAILABLE) for (const write of queue.splice(0)) write.reject(error)
    if (queue.length === 0) {
      this.waiting.delete(channel)
      return
    }
    // Callers answered just now that write again at once (awaiting the store's promise
    // itself) do so in microtasks queued ahead of this flush: they join the batch.
    queueMicrotask(() => this.flush(channel, queue))
  }

  private flush(channel: string, queue: PendingWrite[]): void {
    const batch = this.take(queue)
    const [first] = batch
    const sent = attempt(() => (batch.length === 1 ? this.steps.one(channel, first!.message, first!.historyLimit) : this.steps.batch(channel, batch)))
    sent.then(
      (last) => {
        batch.forEach((write, index) => write.resolve(last - batch.length + 1 + index))
        this.settled(channel, queue)
      },
      (error: unknown) => {
        for (const write of batch) write.reject(error)
        this.settled(channel, queue, error)
      },
    )
  }

  /** The longest run of waiting writes within the bounds (at least one), taken off the queue. */
  private take(waiting: PendingWrite[]): PendingWrite[] {
    let count = 0
    let bytes = 0
    while (count < waiting.length && count < this.options.maxMessages) {
      bytes += waiting[count]!.message.byteLength
      if (count > 0 && bytes > this.options.maxBytes) break
      count++
    }
    return waiting.splice(0, count)
  }
}

/** A step's promise; a step that throws instead of rejecting fails the same way. */
function attempt(step: () => Promise<number>): Promise<number> {
  try {
    return step()
  } catch (error) {
    return Promise.reject(error)
  }
}
