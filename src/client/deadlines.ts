/** An entry that can time out; the links belong to `Deadlines` and are not to be touched elsewhere. */
export interface Timed {
  /** When the entry times out, in `performance.now()` milliseconds. */
  deadline: number
  /** @internal the list of entries sharing this entry's timeout, while it is in one */
  list: TimeoutList | undefined
  /** @internal */
  older: Timed | undefined
  /** @internal */
  newer: Timed | undefined
}

/** Entries with one timeout value, oldest first: their deadlines come in the order they were added. */
interface TimeoutList {
  readonly timeout: number
  oldest: Timed | undefined
  newest: Timed | undefined
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * Sets of a fixed timeout ending at the same kind of deadline (for requests: one per
 * command timeout, usually just the default). One timer per timeout value instead of one
 * per entry: a request then costs two link updates rather than a timer object and its
 * closure, and removing an answered request is O(1).
 *
 * The timer of a list is left running when the entry it was set for goes; when it fires
 * it expires what is due and is set again for the oldest entry left. So steady traffic
 * costs one timer per `timeout`, not one per request. `clear()` stops every timer, for a
 * client with nothing left pending, so that an idle process can exit.
 */
export class Deadlines<T extends Timed> {
  private readonly lists = new Map<number, TimeoutList>()

  /** @param expire called (once) for each entry whose deadline passed, with its timeout; it is no longer in any list */
  constructor(private readonly expire: (entry: T, timeout: number) => void) {}

  add(entry: T, timeout: number): void {
    let list = this.lists.get(timeout)
    if (!list) this.lists.set(timeout, (list = { timeout, oldest: undefined, newest: undefined, timer: undefined }))
    entry.deadline = performance.now() + timeout
    entry.list = list
    entry.older = list.newest
    entry.newer = undefined
    if (list.newest) list.newest.newer = entry
    else list.oldest = entry
    list.newest = entry
    if (list.timer === undefined) this.arm(list, timeout)
  }

  remove(entry: T): void {
    const list = entry.list
    if (!list) return
    if (entry.older) entry.older.newer = entry.newer
    else list.oldest = entry.newer
    if (entry.newer) entry.newer.older = entry.older
    else list.newest = entry.older
    entry.list = entry.older = entry.newer = undefined
  }

  /** Stops every timer and forgets every entry still listed (none of them will expire). */
  clear(): void {
    for (const list of this.lists.values()) {
      clearTimeout(list.timer)
      for (let entry = list.oldest; entry; ) {
        const next = entry.newer
        entry.list = entry.older = entry.newer = undefined
        entry = next
      }
    }
    this.lists.clear()
  }

  private arm(list: TimeoutList, delay: number): void {
    list.timer = setTimeout(() => this.fire(list), delay)
  }

  private fire(list: TimeoutList): void {
    list.timer = undefined
    // Timers count whole milliseconds from a clock read at the start of the loop's turn:
    // one may fire a fraction early, which is no reason to set another.
    const now = performance.now() + 1
    for (let entry = list.oldest; entry && entry.deadline <= now; entry = list.oldest) {
      this.remove(entry as T)
      this.expire(entry as T, list.timeout)
    }
    if (list.oldest) {
      // An entry added meanwhile (by whatever the expiry set off) may have set the timer already.
      if (list.timer === undefined) this.arm(list, list.oldest.deadline - now + 1)
    }
    else if (this.lists.get(list.timeout) === list) this.lists.delete(list.timeout)
  }
}
