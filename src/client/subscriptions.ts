import { ErrorCode, MeshError } from '../shared/errors.js'
import { BuiltinCommand } from '../shared/protocol.js'
import type { RetryScope } from './retry-scope.js'

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
  /**
   * False when the subscription is not live: with `retrying: true` its resume failed
   * for now and is being retried (another `recovery` follows); otherwise the server
   * refused it (a guard now denies, or `error` says why) and it is dropped.
   */
  subscribed: boolean
  /** Present (true) while a failed resume is being retried. */
  retrying?: true
  /** Why the subscription is not live (`FORBIDDEN` when the server answered `success: false`). */
  error?: MeshError
}

/** How a room the client joined itself fared after a reconnect. */
export interface RejoinEvent {
  room: string
  /** True once rejoined. False while retrying (`retrying: true`) or when refused: the room is then dropped. */
  joined: boolean
  /** Present (true) while a failed rejoin is being retried. */
  retrying?: true
  /** Why the room is not joined (`FORBIDDEN` when the server answered `false`). */
  error?: MeshError
}

export interface SubscriptionEvents {
  recovery(event: RecoveryEvent): void
  rejoin(event: RejoinEvent): void
  /** A channel callback threw: a bug of the app, reported without ending the subscription. */
  callbackError(error: unknown): void
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
 * Transient failures are retried within the socket's `RetryScope`; a wanted
 * channel or room is only ever dropped with an event saying so.
 */
export class Subscriptions {
  private readonly channels = new Map<string, Wanted>()
  private readonly rooms = new Set<string>()
  /** The last presence state set in each room: a rejoin carries it, so presence comes back after a reconnect. */
  private readonly presence = new Map<string, unknown>()
  /** Rooms the app is joining right now: a late rejoin's leave must not undo such a join. */
  private readonly joining = new Map<string, number>()

  constructor(
    private readonly command: Command,
    private readonly events: SubscriptionEvents,
  ) {}

  async subscribe<T>(channel: string, callback: ChannelCallback<T>, options: SubscribeOptions = {}): Promise<SubscribeResult<T>> {
    if (typeof callback !== 'function') throw new TypeError('subscribe() needs a callback')
    // One subscription per channel: replacing the callback silently would drop the
    // first one's messages, and two callbacks would make unsubscribe(channel) ambiguous.
    if (this.channels.has(channel)) {
      throw new MeshError(ErrorCode.ALREADY_SUBSCRIBED, `Already subscribed to "${channel}"; unsubscribe first`)
    }
    const wanted: Wanted = { callback: callback as ChannelCallback, lastOffset: 0, buffered: [], started: false }
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

  async joinRoom(room: string, presence?: unknown): Promise<boolean> {
    this.joining.set(room, (this.joining.get(room) ?? 0) + 1)
    let joined: boolean
    try {
      joined = (await this.command(BuiltinCommand.JOIN_ROOM, joinPayload(room, presence))) === true
    } finally {
      const left = this.joining.get(room)! - 1
      if (left === 0) this.joining.delete(room)
      else this.joining.set(room, left)
    }
    if (joined) this.rooms.add(room)
    if (joined && presence !== undefined) this.presence.set(room, presence)
    return joined
  }

  async setPresence(room: string, state: unknown): Promise<void> {
    await this.command(BuiltinCommand.SET_PRESENCE, { room, state })
    if (this.rooms.has(room)) this.presence.set(room, state)
  }

  async leaveRoom(room: string): Promise<boolean> {
    this.rooms.delete(room)
    this.presence.delete(room)
    return (await this.command(BuiltinCommand.LEAVE_ROOM, { room })) === true
  }

  /** The session is over (`close()`): nothing is wanted any more, nothing is resumed by a later `connect()`. */
  clear(): void {
    this.channels.clear()
    this.rooms.clear()
    this.presence.clear()
    this.joining.clear()
  }

  /** A CHANNEL frame from the server. */
  onMessage(channel: string, offset: number, message: unknown): void {
    const wanted = this.channels.get(channel)
    if (!wanted) return
    if (wanted.buffered) wanted.buffered.push([offset, message])
    else this.deliver(channel, wanted, offset, message)
  }

  /**
   * After a reconnect: subscribe again from where each channel left off, and rejoin
   * rooms, each retried on transient failures until it succeeds, is refused, or the
   * scope (the socket) ends. `command` fails at once once that socket is gone.
   */
  async replay(scope: RetryScope, command: Command): Promise<void> {
    await Promise.all([
      ...[...this.channels].map(([channel, wanted]) => this.resume(scope, command, channel, wanted)),
      ...[...this.rooms].map((room) => this.rejoin(scope, command, room)),
    ])
  }

  private async resume(scope: RetryScope, command: Command, channel: string, wanted: Wanted): Promise<void> {
    if (!wanted.started) return
    // Live messages wait here until the reply says where the missed ones end; kept across retries and sockets.
    wanted.buffered ??= []
    const current = (): boolean => this.channels.get(channel) === wanted
    const outcome = await scope.retry(
      // Each attempt asks from the last offset delivered, which is where the next socket would start too.
      async () => (await command(BuiltinCommand.SUBSCRIBE, { channel, since: wanted.lastOffset })) as SubscribeReply,
      {
        wanted: current,
        onRetry: (error, attempt) => {
          if (attempt === 1) this.events.recovery({ channel, complete: false, missed: 0, subscribed: false, retrying: true, error })
        },
      },
    )
    // Abandoned: the socket dropped (the next one resumes from the same offset) or the app let go.
    if (outcome.status === 'abandoned' || !current()) return
    if (outcome.status === 'refused' || !outcome.value.success) {
      this.forget(channel, wanted)
      const error = outcome.status === 'refused' ? outcome.error : new MeshError(ErrorCode.FORBIDDEN, `The server refused to resume "${channel}"`)
      this.events.recovery({ channel, complete: false, missed: 0, subscribed: false, error })
      return
    }
    const reply = outcome.value
    // The server's channel is behind what we saw: its store lost it (an in-memory server
    // restarted). Its offsets start a new life, so the first new message is no gap:
    // this resume's `complete: false` is the one signal of the loss.
    if (reply.offset < wanted.lastOffset) wanted.lastOffset = reply.offset
    const missed = reply.missed ?? []
    for (const message of missed) this.hand(wanted, message)
    this.start(channel, wanted, reply.offset)
    this.events.recovery({ channel, complete: reply.complete === true, missed: missed.length, subscribed: true })
  }

  private async rejoin(scope: RetryScope, command: Command, room: string): Promise<void> {
    const outcome = await scope.retry(async () => (await command(BuiltinCommand.JOIN_ROOM, joinPayload(room, this.presence.get(room)))) === true, {
      wanted: () => this.rooms.has(room),
      onRetry: (error, attempt) => {
        if (attempt === 1) this.events.rejoin({ room, joined: false, retrying: true, error })
      },
    })
    if (outcome.status === 'abandoned') return
    if (!this.rooms.has(room)) {
      // Left while the rejoin was on its way: the server may have answered that leave
      // (not a member) while the join was still in its guard, which then put it in.
      const rejoined = outcome.status === 'done' && outcome.value && !this.joining.has(room)
      if (rejoined) await command(BuiltinCommand.LEAVE_ROOM, { room }).catch(() => {})
      return
    }
    if (outcome.status === 'done' && outcome.value) {
      this.events.rejoin({ room, joined: true })
      return
    }
    this.rooms.delete(room)
    this.presence.delete(room)
    const error = outcome.status === 'refused' ? outcome.error : new MeshError(ErrorCode.FORBIDDEN, `The server refused to rejoin "${room}"`)
    this.events.rejoin({ room, joined: false, error })
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
    if (gap) this.events.recovery({ channel, complete: false, missed: 0, subscribed: true })
    this.hand(wanted, message)
  }

  /** A callback that throws must not leave a resume half done: its subscription would stay buffering forever. */
  private hand(wanted: Wanted, message: unknown): void {
    try {
      wanted.callback(message)
    } catch (error) {
      this.events.callbackError(error)
    }
  }

  private forget(channel: string, wanted: Wanted): void {
    if (this.channels.get(channel) === wanted) this.channels.delete(channel)
  }
}

function joinPayload(room: string, presence: unknown): { room: string; presence?: unknown } {
  return presence === undefined ? { room } : { room, presence }
}
