import { ErrorCode, MeshError } from '../../shared/errors.js'
import { msgpackCodec } from '../../shared/msgpack-codec.js'
import { FrameType } from '../../shared/protocol.js'
import { channelMessage } from '../channel-message.js'
import type { Connection } from '../connection.js'
import { limitExceeded } from '../connection-limits.js'
import { Attempts } from '../attempts.js'
import { Exposure, type Guard } from '../exposure.js'
import { FrameCache } from '../frame-cache.js'
import type { Logger } from '../logger.js'
import { decodeChannelEntry } from '../store/channel-entry.js'
import type { Keys } from '../store/keys.js'
import type { BusHandler, MeshBus, MeshStore } from '../store/types.js'
import { ConcurrencyLimit } from './concurrency-limit.js'
import { noInstruments, type Instruments } from '../instruments.js'

/** What `mesh/subscribe` answers. A fresh subscription gets history; a recovery gets what it missed. */
export type SubscribeReply =
  | { success: false }
  | { success: true; offset: number; history: unknown[] }
  | { success: true; offset: number; missed: unknown[]; complete: boolean }

/** The bounds a ChannelManager keeps: the server options of the same names. */
export interface ChannelLimits {
  maxHistoryLimit: number
  maxHistoryBytes: number
  maxConcurrentHistoryReads: number
  maxChannelsPerConnection: number
  /** How long a history read may wait for its turn. */
  redisTimeout: number
}

interface Subscriber {
  /** Live messages wait here until the snapshot that marks the subscription's start (or a catch-up) is read. */
  buffered: Array<[offset: number, frames: FrameCache]> | undefined
  /** The newest offset written to the connection (or covered by its subscribe's snapshot): where a catch-up starts. */
  lastOffset: number
}

interface LocalChannel {
  readonly subscribers: Map<Connection, Subscriber>
  readonly handler: BusHandler
  /** Settles once this instance's bus subscription to the channel is active. */
  readonly subscribed: Promise<void>
}

/**
 * Channels: messages with per-channel offsets, kept in history and published in one
 * atomic store step. An instance holds one bus subscription per channel that has
 * local subscribers and drops it with the last of them.
 *
 * A subscription starts at the offset read together with the history, after the
 * bus subscription is active: messages up to that offset come from history, later
 * ones live, so none is lost or delivered twice at the boundary.
 */
export class ChannelManager {
  readonly exposure = new Exposure('channel')
  private readonly channels = new Map<string, LocalChannel>()
  /** Subscribes still deciding: an unsubscribe (or a newer subscribe) meanwhile ends them without subscribing. */
  private readonly attempts = new Attempts()
  /** Told of every channel write; set by the server when metrics are on. */
  instruments: Instruments = noInstruments
  /** History reads in flight: each is bounded, and so is how many run at once. */
  private readonly historyReads: ConcurrencyLimit

  constructor(
    private readonly store: MeshStore,
    private readonly bus: MeshBus,
    private readonly keys: Keys,
    private readonly logger: Logger,
    private readonly limits: ChannelLimits,
  ) {
    this.historyReads = new ConcurrencyLimit(limits.maxConcurrentHistoryReads, limits.redisTimeout)
  }

  expose(pattern: string | RegExp, guard?: Guard): void {
    this.exposure.add(pattern, guard)
  }

  /** Publishes a message and keeps the newest `historyLimit` in history (0: none); resolves with its offset. */
  async write(channel: string, message: unknown, historyLimit = 0): Promise<number> {
    const offset = await this.store.writeChannel(channel, channelMessage(channel, message, historyLimit), historyLimit)
    this.instruments.channelWritten()
    return offset
  }

  /**
   * Subscribes a connection. Without `since`: the newest `historyLimit` messages,
   * newest first. With `since` (the last offset the client saw): the retained
   * messages after it, oldest first, and whether that is all that was published.
   * Either way at most `maxHistoryLimit` messages and `maxHistoryBytes`, the
   * newest that fit, read at a cost of what is returned.
   */
  async subscribe(connection: Connection, channel: string, historyLimit: number, since?: number): Promise<SubscribeReply> {
    if (typeof channel !== 'string' || channel.length === 0) return { success: false }
    const attempt = this.attempts.begin(connection, channel)
    const allowed = await this.exposure.allows(connection, channel)
    if (!this.attempts.isCurrent(connection, channel, attempt)) return { success: false }
    this.attempts.finish(connection, channel, attempt)
    // A refused subscribe also ends an earlier subscription: the client dropped it when it asked again.
    this.remove(connection, channel)
    if (!allowed || !connection.isOpen) return { success: false }
    const max = this.limits.maxChannelsPerConnection
    if (connection.channels.size >= max) throw limitExceeded('maxChannelsPerConnection', max, `A connection may subscribe to at most ${max} channels`)
    const local = this.channels.get(channel) ?? this.open(channel)
    const subscriber: Subscriber = { buffered: [], lastOffset: 0 }
    local.subscribers.set(connection, subscriber)
    connection.channels.add(channel)
    try {
      await local.subscribed
      const current = (): boolean => local.subscribers.get(connection) === subscriber
      const limit = Math.min(since === undefined ? historyLimit : Infinity, this.limits.maxHistoryLimit)
      const range = { after: since, maxBytes: this.limits.maxHistoryBytes }
      // A subscription ended while waiting for its turn needs no read at all.
      const snapshot = await this.historyReads.run(async () => (current() ? this.store.readChannel(channel, limit, range) : undefined))
      if (!snapshot || !current()) return { success: false }
      // Live messages that came in while reading: the ones after the snapshot go out now.
      subscriber.lastOffset = snapshot.offset
      release(connection, subscriber, [])
      const entries = snapshot.entries.map(decodeEntry)
      if (since === undefined) return { success: true, offset: snapshot.offset, history: entries.map(([, value]) => value) }
      const missed = entries.filter(([offset]) => offset > since).reverse()
      return { success: true, offset: snapshot.offset, missed: missed.map(([, value]) => value), complete: isComplete(since, snapshot, missed.length) }
    } catch (error) {
      if (local.subscribers.get(connection) === subscriber) this.remove(connection, channel)
      throw error
    }
  }

  /**
   * After the bus was away (Redis restarted, a cluster failover, a slot moved), messages
   * published meanwhile reached no one here: each subscriber gets those history still
   * holds after the last offset it got, in order, before the live ones that arrive
   * meanwhile. What history no longer holds shows as a jump in offsets, which the
   * client reports as `recovery` with `complete: false`.
   */
  async catchUp(): Promise<void> {
    await Promise.all([...this.channels].map(([channel, local]) => this.catchUpChannel(channel, local)))
  }

  private async catchUpChannel(channel: string, local: LocalChannel): Promise<void> {
    // Subscribers still reading their own snapshot are left to it.
    const behind = [...local.subscribers].filter(([, subscriber]) => subscriber.buffered === undefined)
    if (behind.length === 0) return
    for (const [, subscriber] of behind) subscriber.buffered = []
    let missed: Array<[number, FrameCache]> = []
    try {
      // A loop, not Math.min(...): a channel may have more local subscribers than a call takes arguments.
      const after = behind.reduce((least, [, subscriber]) => Math.min(least, subscriber.lastOffset), Infinity)
      const snapshot = await this.historyReads.run(() => this.store.readChannel(channel, this.limits.maxHistoryLimit, { after, maxBytes: this.limits.maxHistoryBytes }))
      missed = snapshot.entries.map((entry) => frameOf(channel, entry)).reverse()
    } catch (error) {
      // The live messages still go out; a gap before them is reported by the client.
      this.logger.warn?.('could not catch a channel up after the bus came back', { channel, error })
    }
    for (const [connection, subscriber] of behind) {
      if (local.subscribers.get(connection) === subscriber) release(connection, subscriber, missed)
    }
  }

  /** True if the connection was subscribed (or about to be: a subscribe still deciding is cancelled). */
  unsubscribe(connection: Connection, channel: string): boolean {
    const cancelled = this.attempts.cancel(connection, channel)
    return this.remove(connection, channel) || cancelled
  }

  /** Each channel with local subscribers (a subscribe still reading its history counts), and how many. */
  *subscriberCounts(): IterableIterator<[channel: string, subscribers: number]> {
    for (const [channel, local] of this.channels) yield [channel, local.subscribers.size]
  }

  /** Ends every subscription of a closed connection. */
  dropConnection(connection: Connection): void {
    for (const channel of [...connection.channels]) this.remove(connection, channel)
  }

  private open(channel: string): LocalChannel {
    const handler: BusHandler = (entry) => this.onMessage(channel, entry)
    const subscribed = this.bus.subscribe(this.keys.channelTopic(channel), handler)
    subscribed.catch(() => {}) // reported to the subscribers awaiting it
    const local: LocalChannel = { subscribers: new Map(), handler, subscribed }
    this.channels.set(channel, local)
    return local
  }

  private remove(connection: Connection, channel: string): boolean {
    connection.channels.delete(channel)
    const local = this.channels.get(channel)
    if (!local?.subscribers.delete(connection)) return false
    if (local.subscribers.size === 0) {
      this.channels.delete(channel)
      this.bus.unsubscribe(this.keys.channelTopic(channel), local.handler).catch((error: unknown) => {
        this.logger.debug?.('could not drop a channel subscription', { channel, error })
      })
    }
    return true
  }

  private onMessage(channel: string, entry: Uint8Array): void {
    const local = this.channels.get(channel)
    const decoded = decodeChannelEntry(entry)
    if (!local || !decoded) return
    let frames: FrameCache
    try {
      frames = FrameCache.of([FrameType.CHANNEL, channel, decoded.offset, msgpackCodec.decode(decoded.message)])
    } catch (error) {
      this.logger.warn?.('ignored an undecodable channel message', { channel, error })
      return
    }
    for (const [connection, subscriber] of local.subscribers) {
      if (subscriber.buffered) subscriber.buffered.push([decoded.offset, frames])
      else {
        connection.write(frames.for(connection.codec))
        subscriber.lastOffset = decoded.offset
      }
    }
  }
}

/**
 * Ends a subscriber's buffering: `first` (oldest first), then what was buffered meanwhile,
 * each message only if it is newer than what the connection has, so none goes out twice.
 */
function release(connection: Connection, subscriber: Subscriber, first: ReadonlyArray<[number, FrameCache]>): void {
  for (const batch of [first, subscriber.buffered ?? []]) {
    for (const [offset, frames] of batch) {
      if (offset <= subscriber.lastOffset) continue
      connection.write(frames.for(connection.codec))
      subscriber.lastOffset = offset
    }
  }
  subscriber.buffered = undefined
}

function frameOf(channel: string, entry: Uint8Array): [number, FrameCache] {
  const [offset, message] = decodeEntry(entry)
  return [offset, FrameCache.of([FrameType.CHANNEL, channel, offset, message])]
}

function decodeEntry(entry: Uint8Array): [number, unknown] {
  const decoded = decodeChannelEntry(entry)
  if (!decoded) throw new MeshError(ErrorCode.INTERNAL_ERROR, 'A channel history entry is corrupt')
  return [decoded.offset, msgpackCodec.decode(decoded.message)]
}

/**
 * Whether the retained messages after `since` are all that was published after it.
 * Offsets count up by one from the channel's base; `since` below the base but not 0,
 * or above the channel's offset, belongs to an earlier life of the channel (its
 * store lost it), so what happened in between cannot be known.
 */
function isComplete(since: number, snapshot: { offset: number; base: number }, retained: number): boolean {
  if (snapshot.offset === since) return true
  // Behind what the client saw (0: the channel is unknown here): the store lost it, an
  // in-memory server restarted say, so whatever was published in between is unknown.
  if (snapshot.offset < since) return false
  if (since === 0) return retained === snapshot.offset - snapshot.base
  if (since < snapshot.base) return false
  return retained === snapshot.offset - since
}
