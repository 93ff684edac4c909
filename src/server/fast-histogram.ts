/**
 * A Prometheus histogram for the hot path, registered in a prom-client registry.
 * prom-client's own `Histogram.observe` builds a label key string on every call
 * (about a microsecond), which a command round trip would feel; here each label set
 * is a `HistogramCell` the caller looks up once and keeps, and an observation is a
 * few additions. The registry asks for the values only when scraped.
 *
 * It speaks the interface prom-client's registry reads from every metric (`name`,
 * `help`, `type`, `aggregator`, `get()`, `reset()`), the same its own metrics
 * implement; it is typed here rather than through prom-client, which is optional.
 */
export class HistogramCell {
  /** Observations per bucket (not cumulative), the last one for `+Inf`. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(
    private readonly bounds: readonly number[],
    /** Label values in the histogram's label order. */
    readonly labels: readonly string[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  observe(value: number): void {
    const bounds = this.bounds
    let index = 0
    while (index < bounds.length && value > bounds[index]!) index++
    this.counts[index]!++
    this.sum += value
    this.count++
  }
}

/** One sample of prom-client's metric format. */
interface Sample {
  value: number
  labels: Record<string, string | number>
  metricName: string
}

export class FastHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly cells = new Map<string, HistogramCell>()

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new RangeError(`histogram ${name}: buckets must increase`)
    }
  }

  /** The cell of these label values (in `labelNames` order), made on first use. Callers keep it. */
  cell(...labels: string[]): HistogramCell {
    const key = labels.join('\u0000')
    let cell = this.cells.get(key)
    if (!cell) this.cells.set(key, (cell = new HistogramCell(this.bounds, labels)))
    return cell
  }

  /** What prom-client's registry renders: cumulative buckets, sum and count per label set. */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const values: Sample[] = []
    for (const cell of this.cells.values()) {
      const labels: Record<string, string> = {}
      this.labelNames.forEach((name, i) => (labels[name] = cell.labels[i]!))
      let cumulative = 0
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i]!
        const le = i < this.bounds.length ? this.bounds[i]! : '+Inf'
        values.push({ value: cumulative, labels: { ...labels, le }, metricName: `${this.name}_bucket` })
      }
      values.push({ value: cell.sum, labels, metricName: `${this.name}_sum` })
      values.push({ value: cell.count, labels, metricName: `${this.name}_count` })
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values })
  }

  /** `registry.resetMetrics()`: zero every cell in place, since callers hold them. */
  reset(): void {
    for (const cell of this.cells.values()) {
      cell.counts.fill(0)
      cell.sum = 0
      cell.count = 0
    }
  }
}
