const SEEN_IDS_KEPT = 1_000

/**
 * Messages the server kept while the user was offline arrive with an id. Each is
 * acknowledged (also a repeat: the server sends again what it never heard
 * acknowledged), in batches, and handed to the application only the first time.
 */
export class RedeliveredMessages {
  private readonly seen = new Set<string>()
  private pending: string[] = []

  constructor(
    private readonly acknowledge: (ids: string[]) => void,
    private readonly deliver: (event: string, payload: unknown) => void,
  ) {}

  receive(event: string, payload: unknown, id: string): void {
    if (this.pending.length === 0) setTimeout(() => this.flush(), 0)
    this.pending.push(id)
    if (this.seen.has(id)) return
    this.seen.add(id)
    if (this.seen.size > SEEN_IDS_KEPT) this.seen.delete(this.seen.values().next().value as string)
    this.deliver(event, payload)
  }

  /** Acknowledges what was received so far now (also done by itself once per turn of the event loop). */
  flush(): void {
    if (this.pending.length === 0) return
    const ids = this.pending
    this.pending = []
    this.acknowledge(ids)
  }
}
