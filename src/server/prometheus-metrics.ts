import { createRequire } from 'node:module'
import type * as PromClient from 'prom-client'
import { ErrorCode } from '../shared/errors.js'
import { CloseCode } from '../shared/protocol.js'
import { FastHistogram, type HistogramCell } from './fast-histogram.js'
import type { Instruments } from './instruments.js'
import type { Logger } from './logger.js'
import type { RouteHandler } from './http-routes.js'

/**
 * The part of a prom-client `Registry` meshkit uses: typed here so that meshkit's
 * types do not need prom-client, which is an optional dependency.
 */
export interface MetricsRegistry {
  /** The exposition text of every metric in the registry. */
  metrics(): Promise<string>
  readonly contentType: string
  registerMetric(metric: object): void
  removeSingleMetric(name: string): void
  getSingleMetric(name: string): unknown
}

/** The `metrics` option in its object form. */
export interface MetricsOptions {
  /** The prom-client registry to register meshkit's metrics in (one server per registry, unless their prefixes differ). @default a new registry of the server's own */
  register?: MetricsRegistry
  /** Prefix of every metric name. @default 'meshkit_' */
  prefix?: string
}

export const metricsDefaults = { prefix: 'meshkit_' }

/** What the metrics read when scraped: gauges cost nothing between scrapes. */
export interface MetricsSources {
  connections(): number
  redeliveryQueue(): number
  /** Entries not yet delivered to each portal group; undefined without portals. */
  portalBacklog(): Promise<ReadonlyMap<string, number>> | undefined
  /** Whether a command name is registered (here or by a portal): only those become label values. */
  knowsCommand(name: string): boolean
}

const COMMAND_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const REDIS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]
/** Codes meshkit sends or RFC 6455 defines; any other (an application's own 4xxx) is `other`. */
const CLOSE_CODES = new Set<number>([...Object.values(CloseCode), 1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015])
const OUTCOMES = new Set<string>(['ok', ...Object.values(ErrorCode)])
const UNKNOWN_COMMAND = 'unknown'

interface CommandCell {
  readonly duration: HistogramCell
  /** Answers since the last scrape, by outcome. */
  readonly outcomes: Map<string, number>
}

/** Counts since the last scrape by label value, added to a prom-client counter when it is scraped. */
class Pending {
  private readonly counts = new Map<string, number>()
  add(label: string, amount = 1): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + amount)
  }
  flush(into: (label: string, amount: number) => void): void {
    for (const [label, amount] of this.counts) if (amount > 0) into(label, amount)
    this.counts.clear()
  }
}

/**
 * meshkit's Prometheus metrics: the `Instruments` of a server with `metrics` on.
 * The hot path adds to plain numbers; prom-client's counters take the sums when
 * scraped (through their `collect`), and gauges are read then, so that a request
 * pays a few additions rather than prom-client's label hashing.
 */
export class PrometheusMetrics implements Instruments {
  readonly register: MetricsRegistry
  private readonly names: string[] = []
  private sources: MetricsSources | undefined
  private readonly commands = new Map<string, CommandCell>()
  private readonly unknownCommand: CommandCell
  private readonly commandDurations: FastHistogram
  private readonly redisDuration: HistogramCell
  private readonly messages = new Pending()
  private readonly closes = new Pending()
  private readonly limited = new Pending()
  private readonly redisErrors = new Pending()
  private readonly refused = new Pending()
  private opened = 0
  private events = 0
  private bytes = 0
  private busReceived = 0
  private busPublished = 0
  private slowConsumers = 0
  private channelWrites = 0
  /** A fan-out writes one string to many sockets: its UTF-8 length is measured once. */
  private lastString = ''
  private lastStringBytes = 0

  constructor(options: true | MetricsOptions, private readonly logger: Logger) {
    const prom = loadPromClient()
    const { register, prefix } = { ...metricsDefaults, ...(options === true ? {} : options) }
    if (register !== undefined && (typeof register.registerMetric !== 'function' || typeof register.metrics !== 'function')) {
      throw new TypeError('metrics.register must be a prom-client Registry')
    }
    if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) throw new TypeError(`metrics.prefix must be a valid metric name prefix, got ${String(prefix)}`)
    this.register = register ?? new prom.Registry()
    for (const name of ['connections', 'commands_total', 'command_duration_seconds']) {
      if (this.register.getSingleMetric(prefix + name)) throw new RangeError(`metrics: ${prefix}${name} is already registered in this registry; give each server its own registry or prefix`)
    }
    this.commandDurations = this.adopt(new FastHistogram(`${prefix}command_duration_seconds`, 'Seconds from a request\'s arrival to its answer, by command', ['command'], COMMAND_BUCKETS))
    this.unknownCommand = { duration: this.commandDurations.cell(UNKNOWN_COMMAND), outcomes: new Map() }
    this.redisDuration = this.adopt(new FastHistogram(`${prefix}redis_command_duration_seconds`, 'Seconds a Redis command of the store took to answer', [], REDIS_BUCKETS)).cell()
    const registers = [this.register as unknown as PromClient.Registry]
    const counter = (name: string, help: string, read: (counter: PromClient.Counter) => void, labelNames: string[] = []): void => {
      this.names.push(prefix + name)
      new prom.Counter({ name: prefix + name, help, labelNames, registers, collect() { read(this) } })
    }
    const gauge = (name: string, help: string, read: (gauge: PromClient.Gauge) => void | Promise<void>, labelNames: string[] = []): void => {
      this.names.push(prefix + name)
      new prom.Gauge({ name: prefix + name, help, labelNames, registers, collect() { return read(this) } })
    }
    const single = (take: () => number) => (metric: PromClient.Counter): void => {
      const amount = take()
      if (amount > 0) metric.inc(amount)
    }
    const labelled = (pending: Pending, label: string) => (metric: PromClient.Counter): void => pending.flush((value, amount) => metric.inc({ [label]: value }, amount))
    gauge('connections', 'Connections open on this instance (past their hello)', (metric) => metric.set(this.sources?.connections() ?? 0))
    counter('connections_opened_total', 'Connections that received their hello', single(() => this.take('opened')))
    counter('connections_closed_total', 'Closed connections by WebSocket close code (other: a code neither meshkit nor RFC 6455 defines)', labelled(this.closes, 'code'), ['code'])
    counter('commands_total', 'Answered requests by command (unknown: not registered) and outcome (ok or the error code)', (metric) => this.flushCommands(metric), ['command', 'outcome'])
    counter('client_messages_total', 'Client messages (client.send) by outcome', labelled(this.messages, 'outcome'), ['outcome'])
    counter('events_written_total', 'Event frames written to sockets (a fan-out counts each socket)', single(() => this.take('events')))
    counter('event_bytes_written_total', 'Bytes of the event frames written to sockets', single(() => this.take('bytes')))
    counter('bus_messages_received_total', 'Messages this instance received from the Redis bus', single(() => this.take('busReceived')))
    counter('bus_messages_published_total', 'Messages this instance published on the Redis bus', single(() => this.take('busPublished')))
    counter('slow_consumer_closes_total', 'Connections closed (4008) for reading too slowly', single(() => this.take('slowConsumers')))
    counter('rate_limited_total', 'Requests and messages refused by rateLimit, and connections closed by it, by kind', labelled(this.limited, 'kind'), ['kind'])
    counter('redis_errors_total', 'Redis connection errors and failed store commands, by kind', labelled(this.redisErrors, 'kind'), ['kind'])
    counter('channel_writes_total', 'Channel messages written by this instance', single(() => this.take('channelWrites')))
    counter('upgrades_refused_total', 'WebSocket upgrades refused before a connection existed, by HTTP status', labelled(this.refused, 'status'), ['status'])
    gauge('redelivery_queue_length', 'Events held on this instance for connections whose kept messages are being redelivered', (metric) => metric.set(this.sources?.redeliveryQueue() ?? 0))
    gauge('portal_backlog', 'Portal events not yet delivered to each portal group (read from Redis when scraped; the same on every instance)', (metric) => this.readBacklog(metric), ['group'])
  }

  /** Connects the gauges to the server's state once it exists. */
  read(sources: MetricsSources): void {
    this.sources = sources
  }

  /** `GET /metrics`: every metric of the registry (the user's own too, when they passed theirs). */
  readonly serve: RouteHandler = async (_request, response) => {
    const text = await this.register.metrics()
    response.writeHead(200, { 'Content-Type': this.register.contentType })
    response.end(text)
  }

  /** Removes meshkit's metrics from the registry (the server closed), so that a new server may register them again. */
  unregister(): void {
    for (const name of this.names) this.register.removeSingleMetric(name)
  }

  now(): number {
    return performance.now() / 1000
  }

  connectionOpened(): void {
    this.opened++
  }

  connectionClosed(code: number): void {
    this.closes.add(CLOSE_CODES.has(code) ? String(code) : 'other')
  }

  commandDone(name: string, outcome: string, seconds: number): void {
    let cell = this.commands.get(name)
    if (cell === undefined) {
      // Only registered names get a cell of their own: a client inventing names must not grow the label set.
      if (this.sources?.knowsCommand(name)) this.commands.set(name, (cell = { duration: this.commandDurations.cell(name), outcomes: new Map() }))
      else cell = this.unknownCommand
    }
    cell.duration.observe(seconds)
    const label = outcome === 'ok' || OUTCOMES.has(outcome) ? outcome : 'other'
    cell.outcomes.set(label, (cell.outcomes.get(label) ?? 0) + 1)
  }

  messageReceived(outcome: string): void {
    this.messages.add(outcome)
  }

  eventWritten(frame: Uint8Array | string): void {
    this.events++
    if (typeof frame !== 'string') this.bytes += frame.byteLength
    else {
      if (frame !== this.lastString) {
        this.lastString = frame
        this.lastStringBytes = Buffer.byteLength(frame)
      }
      this.bytes += this.lastStringBytes
    }
  }

  busIn(messages: number): void {
    this.busReceived += messages
  }

  busOut(messages: number): void {
    this.busPublished += messages
  }

  slowConsumerClosed(): void {
    this.slowConsumers++
  }

  rateLimited(kind: string): void {
    this.limited.add(kind)
  }

  redisError(kind: 'connection' | 'command'): void {
    this.redisErrors.add(kind)
  }

  redisCommand(seconds: number): void {
    this.redisDuration.observe(seconds)
  }

  channelWritten(): void {
    this.channelWrites++
  }

  upgradeRefused(status: number): void {
    this.refused.add(String(status))
  }

  private take(field: 'opened' | 'events' | 'bytes' | 'busReceived' | 'busPublished' | 'slowConsumers' | 'channelWrites'): number {
    const amount = this[field]
    this[field] = 0
    return amount
  }

  private adopt(histogram: FastHistogram): FastHistogram {
    this.register.registerMetric(histogram)
    this.names.push(histogram.name)
    return histogram
  }

  private flushCommands(metric: PromClient.Counter): void {
    const flush = (command: string, cell: CommandCell): void => {
      for (const [outcome, amount] of cell.outcomes) if (amount > 0) metric.inc({ command, outcome }, amount)
      cell.outcomes.clear()
    }
    for (const [command, cell] of this.commands) flush(command, cell)
    flush(UNKNOWN_COMMAND, this.unknownCommand)
  }

  private async readBacklog(metric: PromClient.Gauge): Promise<void> {
    metric.reset()
    try {
      const backlog = await this.sources?.portalBacklog()
      if (backlog) for (const [group, entries] of backlog) metric.set({ group }, entries)
    } catch (error) {
      // A scrape while Redis is away still answers, without the backlog.
      this.logger.debug?.('could not read the portal backlog for metrics', { error })
    }
  }
}

/** prom-client, loaded only when metrics are on: it is an optional dependency. */
function loadPromClient(): typeof PromClient {
  try {
    return createRequire(import.meta.url)('prom-client') as typeof PromClient
  } catch (error) {
    throw new TypeError('metrics need prom-client: npm install prom-client', { cause: error })
  }
}
