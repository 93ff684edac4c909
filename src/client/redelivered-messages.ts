/** Acknowledged ids remembered: a repeat can still be on its way, read by a redelivery before the ack removed it. */
const SEEN_IDS_KEPT = 1_000
/**
 * Ids shown but not yet acknowledged remembered at most. The server keeps at most
 * `sync.maxMessages` per user and sends nothing older again, so only a server
 * keeping more than this many could repeat one forgotten here.
 */
const UNACKNOWLEDGED_IDS_KEPT = 10_000
/** Ids per acknowledgement: about 20 KB, far below any sensible maxPayload. */
const ACK_BATCH = 1_000

/**
 * Messages the server kept while the user was offline arrive with an id. Each is
 * acknowledged (also a repeat: the server sends again what it never heard
 * acknowledged), in batches, and handed to the application only the first time.
 *
 * An id stays remembered until its acknowledgement succeeded: one that failed (the
 * socket dropped, the store was away) comes again with a later session, however
 * many messages came in between, and must not be shown twice.
 */
export class RedeliveredMessages {
  private readonly seen = new Set<string>()
  private readonly unacknowledged = new Set<string>()
  private pending: string[] = []

  constructor(
    private readonly acknowledge: (ids: string[]) => Promise<unknown>,
    private readonly deliver: (event: string, payload: unknown) => void,
  ) {}

  receive(event: string, payload: unknown, id: string): void {
    if (this.pending.length === 0) setTimeout(() => this.flush(), 0)
    this.pending.push(id)
    if (this.seen.has(id) || this.unacknowledged.has(id)) return
    remember(this.unacknowledged, id, UNACKNOWLEDGED_IDS_KEPT)
    this.deliver(event, payload)
  }

  /** Acknowledges what was received so far now (also done by itself once per turn of the event loop). */
  flush(): void {
    // In batches small enough for any server's maxPayload (an id is about 20 bytes).
    while (this.pending.length > 0) this.acknowledgeBatch(this.pending.splice(0, ACK_BATCH))
  }

  private acknowledgeBatch(ids: string[]): void {
    this.acknowledge(ids).then(
      () => {
        for (const id of ids) if (this.unacknowledged.delete(id)) remember(this.seen, id, SEEN_IDS_KEPT)
      },
      () => {
        // Still kept by the server: sent again after the next authentication, and acknowledged then.
      },
    )
  }

  /** A new session may be another user's, whose ids (from that user's own stream) could equal these. */
  reset(): void {
    this.seen.clear()
    this.unacknowledged.clear()
  }
}

/** Adds `id`, forgetting the oldest beyond `max`. */
function remember(ids: Set<string>, id: string, max: number): void {
  ids.add(id)
  if (ids.size > max) ids.delete(ids.values().next().value as string)
}
