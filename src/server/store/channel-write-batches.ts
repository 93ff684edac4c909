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

interface ChannelQueue {
  readonly waiting: PendingWrite[]
  /** A batch of this channel is at the store: the next one waits for its reply. */
  sending: boolean
  /** A flush is queued as a microtask. */
  scheduled: boolean
}

/**
 * Sends one batch of a channel's writes, in order, as one atomic store step;
 * resolves with the offset of the batch's last message (the others precede it by
 * one each), or rejects for all of them.
 */
export type SendChannelBatch = (channel: string, writes: readonly ChannelWrite[]) => Promise<number>

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
 * Gathers concurrent writes to a channel into batches: writes made in one turn, or
 * while the channel's previous batch is at the store, leave together as one step
 * that gives them consecutive offsets in call order. One batch per channel is in
 * flight at a time, so the order of calls is the order of offsets whatever the
 * transport does with concurrent commands (a cluster's redirections included);
 * different channels' batches go out side by side. Each caller gets its own offset,
 * or the batch's error; a batch that failed with UNAVAILABLE also fails the writes
 * waiting behind it, with the same error.
 */
export class ChannelWriteBatches {
  private readonly queues = new Map<string, ChannelQueue>()
  private readonly options: ChannelWriteBatchesOptions

  constructor(
    private readonly send: SendChannelBatch,
    options: Partial<ChannelWriteBatchesOptions> = {},
  ) {
    this.options = { ...channelWriteBatchesDefaults, ...options }
  }

  write(channel: string, message: Uint8Array, historyLimit: number): Promise<number> {
    // A copy: the caller's bytes may be a view of a buffer its encoder reuses before the batch leaves.
    const bytes = Buffer.from(message)
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(channel)
      if (!queue) this.queues.set(channel, (queue = { waiting: [], sending: false, scheduled: false }))
      queue.waiting.push({ message: bytes, historyLimit, resolve, reject })
      if (!queue.sending && !queue.scheduled) this.schedule(channel, queue)
    })
  }

  /** Flushes once the current synchronous run (and the microtasks queued before this one) is done: its writes leave together. */
  private schedule(channel: string, queue: ChannelQueue): void {
    queue.scheduled = true
    queueMicrotask(() => this.flush(channel, queue))
  }

  private flush(channel: string, queue: ChannelQueue): void {
    queue.scheduled = false
    const batch = this.take(queue.waiting)
    if (batch.length === 0) {
      this.queues.delete(channel)
      return
    }
    queue.sending = true
    const settled = (): void => {
      queue.sending = false
      // Callers answered just now that write again (each awaiting its offset, then
      // writing) do so in this turn's microtasks, ahead of a flush queued by the first
      // of them: they leave together, as do the writes that waited for this batch.
      if (queue.waiting.length > 0) this.schedule(channel, queue)
      else this.queues.delete(channel)
    }
    let sent: Promise<number>
    try {
      sent = this.send(channel, batch)
    } catch (error) {
      sent = Promise.reject(error)
    }
    sent.then(
      (last) => {
        const first = last - batch.length + 1
        batch.forEach((write, index) => write.resolve(first + index))
        settled()
      },
      (error: unknown) => {
        for (const write of batch) write.reject(error)
        // Without Redis (down, or no reply within the timeout) the writes waiting behind
        // fail now: each caller hears within one timeout, as when every write was its own
        // call. None of them was sent, so none was written.
        if (error instanceof MeshError && error.code === ErrorCode.UNAVAILABLE) for (const write of queue.waiting.splice(0)) write.reject(error)
        settled()
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
