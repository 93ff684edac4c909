import { BuiltinCommand } from '../shared/protocol.js'

export type ChannelCallback<T = unknown> = (message: T) => void

export interface SubscribeOptions {
  /** How many of the newest retained messages `subscribe()` returns. @default 0 */
  historyLimit?: number
}

export interface SubscribeResult<T = unknown> {
  success: boolean
  /** The newest retained messages, newest first; never passed to the callback. */
  history: T[]
}

/** How a channel fared after a reconnect (or a gap noticed in live messages). */
export interface RecoveryEvent {
  channel: string
  /** False when messages may have been missed: more than history kept, or the store lost it. */
  complete: boolean
  /** Messages replayed through the callback. */
  missed: number
  /** False when the server refused the subscription on reconnect (a guard now denies); it is dropped. */
  subscribed: boolean
}

interface Wanted {
  readonly callback: ChannelCallback
  /** The last offset delivered (or the subscription's starting offset). */
  lastOffset: number
  /** Live messages that arrived before the server's reply; delivered after it, in order. */
  buffered: Array<[number, unknown]> | undefined
  /** Whether the server ever confirmed it; one still on its way is not replayed, its own request establishes it. */
  started: boolean
}

type SubscribeReply =
  | { success: false }
  | { success: true; offset: number; history?: unknown[]; missed?: unknown[]; complete?: boolean }

type Command = (name: string, payload: unknown) => Promise<unknown>

/**
 * The channels and rooms the application wants, kept across reconnects. After a
 * reconnect, `replay()` subscribes again from the last offset seen and rejoins
 * rooms; messages missed meanwhile go through the callback once, in order.
 */
export class Subscriptions {
  private readonly channels = new Map<string, Wanted>()
  private readonly rooms = new Set<string>()

  constructor(
    private readonly command: Command,
    private readonly onRecovery: (event: RecoveryEvent) => void,
  ) {}

  async subscribe<T>(channel: string, callback: ChannelCallback<T>, options: SubscribeOptions = {}): Promise<SubscribeResult<T>> {
    if (typeof callback !== 'function') throw new TypeError('subscribe() needs a callback')
    const wanted: Wanted = { callback: callback as ChannelCallback, lastOffset: 0, buffered: [], started: false }
    // A new subscription replaces any earlier one: the old callback never fires again.
    this.channels.set(channel, wanted)
    let reply: SubscribeReply
    try {
      reply = (await this.command(BuiltinCommand.SUBSCRIBE, { channel, historyLimit: options.historyLimit ?? 0 })) as SubscribeReply
    } catch (error) {
      this.forget(channel, wanted)
      throw error
    }
    if (this.channels.get(channel) !== wanted) return { success: false, history: [] }
    if (!reply.success) {
      this.forget(channel, wanted)
      return { success: false, history: [] }
    }
    this.start(channel, wanted, reply.offset)
    return { success: true, history: (reply.history ?? []) as T[] }
  }

  /** Resolves true if the channel was subscribed. */
  async unsubscribe(channel: string): Promise<boolean> {
    if (!this.channels.delete(channel)) return false
    await this.command(BuiltinCommand.UNSUBSCRIBE, { channel }).catch(() => {
      // The socket may be gone; the server drops subscriptions of closed connections itself.
    })
    return true
  }

  async joinRoom(room: string): Promise<boolean> {
    const joined = (await this.command(BuiltinCommand.JOIN_ROOM, { room })) === true
    if (joined) this.rooms.add(room)
    return joined
  }

  async leaveRoom(room: string): Promise<boolean> {
    this.rooms.delete(room)
    return (await this.command(BuiltinCommand.LEAVE_ROOM, { room })) === true
  }

  /** A CHANNEL frame from the server. */
  onMessage(channel: string, offset: number, message: unknown): void {
    const wanted = this.channels.get(channel)
    if (!wanted) return
    if (wanted.buffered) wanted.buffered.push([offset, message])
    else this.deliver(channel, wanted, offset, message)
  }

  /** After a reconnect: subscribe again from where each channel left off, then rejoin rooms. */
  async replay(): Promise<void> {
    await Promise.all([...this.channels].map(([channel, wanted]) => this.resume(channel, wanted)))
    await Promise.all(
      [...this.rooms].map(async (room) => {
        if ((await this.command(BuiltinCommand.JOIN_ROOM, { room })) !== true) this.rooms.delete(room)
      }),
    )
  }

  private async resume(channel: string, wanted: Wanted): Promise<void> {
    if (!wanted.started) return
    wanted.buffered ??= []
    let reply: SubscribeReply
    try {
      reply = (await this.command(BuiltinCommand.SUBSCRIBE, { channel, since: wanted.lastOffset })) as SubscribeReply
    } catch {
      // Not resumed on this socket (it dropped again, or the server could not): the next reconnect tries again.
      return
    }
    if (this.channels.get(channel) !== wanted) return
    if (!reply.success) {
      this.forget(channel, wanted)
      this.onRecovery({ channel, complete: false, missed: 0, subscribed: false })
      return
    }
    const missed = reply.missed ?? []
    for (const message of missed) wanted.callback(message)
    this.start(channel, wanted, reply.offset)
    this.onRecovery({ channel, complete: reply.complete === true, missed: missed.length, subscribed: true })
  }

  /** From `offset` on, messages go to the callback: first those that waited for the reply. */
  private start(channel: string, wanted: Wanted, offset: number): void {
    wanted.started = true
    wanted.lastOffset = Math.max(wanted.lastOffset, offset)
    const buffered = wanted.buffered ?? []
    wanted.buffered = undefined
    for (const [bufferedOffset, message] of buffered) this.deliver(channel, wanted, bufferedOffset, message)
  }

  private deliver(channel: string, wanted: Wanted, offset: number, message: unknown): void {
    if (offset <= wanted.lastOffset) return
    // Offsets count up by one; a jump means messages were lost (the store restarted empty, say).
    const gap = wanted.lastOffset > 0 && offset > wanted.lastOffset + 1
    wanted.lastOffset = offset
    if (gap) this.onRecovery({ channel, complete: false, missed: 0, subscribed: true })
    wanted.callback(message)
  }

  private forget(channel: string, wanted: Wanted): void {
    if (this.channels.get(channel) === wanted) this.channels.delete(channel)
  }
}
