import { CloseCode } from '../shared/protocol.js'
import { mergeOptions, requireKnownKeys, type OptionKeys } from '../shared/options.js'
import type { Connection } from './connection.js'
import type { Logger } from './logger.js'

/** Options of `server.close()`. */
export interface CloseOptions {
  /**
   * Milliseconds to drain over before closing: readiness turns 503 and upgrades are
   * refused with 503 at once; each connection is then given a moment spread evenly
   * over the first 90 % of the window (in random order), when it stops taking
   * requests, finishes those it is running, and is closed with 1012 (the client
   * reconnects at once and sends its unanswered requests again). Connections still
   * busy at the window's end are closed with 1001, as without a drain. 0: close every
   * connection at once with 1001. @default 0
   */
  drain?: number
}

export const closeDefaults = {
  drain: 0,
} satisfies CloseOptions

const closeOptionKeys: OptionKeys<CloseOptions> = { drain: true }

/** Checked when `close()` is called, before anything stops: a bad value throws rather than closing some other way. */
export function resolveCloseOptions(options: CloseOptions): Required<CloseOptions> {
  requireKnownKeys(options, closeOptionKeys)
  const resolved = mergeOptions(closeDefaults, options)
  if (!(typeof resolved.drain === 'number' && Number.isFinite(resolved.drain) && resolved.drain >= 0)) {
    throw new RangeError(`drain must be a finite number of milliseconds, 0 or more, got ${String(resolved.drain)}`)
  }
  return resolved
}

/** What a drain works on: the server's sockets (`SocketLifecycle`). */
export interface DrainTarget {
  /** Every open socket, greeted or not. */
  readonly all: ReadonlySet<Connection>
  whenEmpty(): Promise<void>
  refuseUpgrades(): void
}

/**
 * The part of the window over which closes are spread: the rest is left for commands
 * that were running when their connection's turn came.
 */
const SPREAD = 0.9

/**
 * A graceful drain (`close({ drain })`). Closing everyone at once would send the whole
 * instance's clients to the survivors in the same second; spreading the closes over
 * the window makes their arrivals a trickle. Each connection's close waits for its
 * running commands, and requests arriving after its turn are not run, so that the 1012
 * close means exactly "every request I did not answer, I did not run": the client can
 * send those again without running anything twice.
 */
export class Drain {
  private timer: ReturnType<typeof setTimeout> | undefined
  private windowTimer: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly target: DrainTarget,
    private readonly logger: Logger,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * Resolves when every socket is closed, or at the window's end with the number left
   * open (still running a command, or slow to finish the close handshake): the caller
   * closes those with 1001.
   */
  async run(window: number): Promise<number> {
    this.target.refuseUpgrades()
    const order = shuffle([...this.target.all], this.random)
    const start = performance.now()
    const slot = (index: number): number => (window * SPREAD * (index + 0.5)) / order.length
    let next = 0
    // One timer walking the list rather than one per connection: an instance of many
    // thousands would otherwise hold as many timers for the whole window.
    const step = (): void => {
      const elapsed = performance.now() - start
      while (next < order.length && slot(next) <= elapsed) retire(order[next++]!)
      if (next < order.length) this.timer = setTimeout(step, slot(next) - elapsed)
    }
    step()
    const windowEnd = new Promise<'end'>((resolve) => (this.windowTimer = setTimeout(() => resolve('end'), window)))
    const ended = await Promise.race([this.target.whenEmpty(), windowEnd])
    clearTimeout(this.timer)
    clearTimeout(this.windowTimer)
    if (ended !== 'end') return 0
    const left = this.target.all.size
    if (left > 0) this.logger.warn?.('drain window ended: closing the connections still open with 1001', { connections: left, drain: window })
    return left
  }
}

/** Its turn came: no new request runs; it closes once the running ones have answered. */
function retire(connection: Connection): void {
  connection.draining = true
  if (connection.pendingRequests === 0) closeForRestart(connection)
  else connection.onIdle = () => closeForRestart(connection)
}

function closeForRestart(connection: Connection): void {
  connection.onIdle = undefined
  connection.close(CloseCode.SERVICE_RESTART, 'draining')
}

/** Fisher–Yates: no group of clients (the oldest, say) always goes first. */
function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const swap = items[i]!
    items[i] = items[j]!
    items[j] = swap
  }
  return items
}
