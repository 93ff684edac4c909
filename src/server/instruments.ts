/**
 * The hot-path notifications meshkit's server parts give about what they do, for
 * metrics. With metrics off every part holds `noInstruments`, whose methods do
 * nothing: a call on it is the whole cost, so callers never test a flag or build an
 * object for it. Arguments are numbers and short strings that already exist (a
 * command's name, an error code), so that a call allocates nothing.
 *
 * Gauges (open connections, redelivery queue length, portal backlog) are not here:
 * the metrics read them when scraped, so that keeping them costs nothing between
 * scrapes.
 */
export interface Instruments {
  /** A time in seconds, only for the difference between two calls; the no-op returns 0 without reading a clock. */
  now(): number
  /** A client completed the handshake and counts as connected. */
  connectionOpened(): void
  /** A connected client's socket closed, with the close code it closed with (sent or received). */
  connectionClosed(code: number): void
  /**
   * A command answered. `name` is the command the client asked for (the metrics
   * bound it to registered and built-in names); `outcome` is `ok` or the error code
   * the client was sent; `seconds` from the request's arrival to its answer.
   */
  commandDone(name: string, outcome: string, seconds: number): void
  /**
   * A client message (`send`, not a request) was taken in; `outcome` says what became
   * of it: `delivered` (to handlers or portals), `unhandled`, `unauthorized`, `invalid`
   * (refused by its schema), `dropped` (middleware refused it, its schema failed, or too
   * many waited) or `rate_limited`.
   */
  messageReceived(outcome: string): void
  /**
   * One event frame was written to one socket (a fan-out writes one frame many
   * times: each write counts). The frame itself rather than its size, so that with
   * metrics off nobody measures a string's UTF-8 length.
   */
  eventWritten(frame: Uint8Array | string): void
  /** Messages this instance took from the bus (Redis pub/sub or the memory bus). */
  busIn(messages: number): void
  /** Messages this instance published to the bus. */
  busOut(messages: number): void
  /** A connection was closed because it read too slowly (`SLOW_CONSUMER`). */
  slowConsumerClosed(): void
  /** A request or message was refused by the rate limit; `kind` is `request`, `message` or `disconnect`. */
  rateLimited(kind: string): void
  /** A Redis connection (`connection`) or a command (`command`) failed. */
  redisError(kind: 'connection' | 'command'): void
  /** A Redis command the store issued answered after `seconds`. */
  redisCommand(seconds: number): void
  /** A channel message was written (appended to its history and published). */
  channelWritten(): void
  /** A WebSocket upgrade was refused with this HTTP status before a connection existed. */
  upgradeRefused(status: number): void
}

function nothing(): void {}

function zero(): number {
  return 0
}

/** The instruments of a server with metrics off: every call does nothing. */
export const noInstruments: Instruments = Object.freeze({
  now: zero,
  connectionOpened: nothing,
  connectionClosed: nothing,
  commandDone: nothing,
  messageReceived: nothing,
  eventWritten: nothing,
  busIn: nothing,
  busOut: nothing,
  slowConsumerClosed: nothing,
  rateLimited: nothing,
  redisError: nothing,
  redisCommand: nothing,
  channelWritten: nothing,
  upgradeRefused: nothing,
})
