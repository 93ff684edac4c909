import type { RedisConnection } from '../store/redis-client.js'
import type { Connection } from '../connection.js'
import type { Handshake } from '../handshake.js'
import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import type { ResolvedServerPortalOptions } from './server-portal-options.js'
import { EntryKind, entryFields, partitionOf, type EntryBody, type EntryIdentity } from './stream-format.js'

// Appends a batch of events to a partition (in order), then keeps the stream at most
// `cap` long. The oldest entries make room; each one that some consumer group has
// not been delivered yet (or every one, when no group exists: no portal ever read
// it) is a dropped event, and the reply counts them. Exact trimming (no "~"): the
// bound is what `maxBacklog` promises. Entries delivered but not yet acknowledged
// are trimmed without counting: a portal that holds them already has them.
// KEYS: the partition's stream. ARGV: cap, values per entry, then each entry's fields and values.
const APPEND_EVENTS = `
local cap = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
for i = 3, #ARGV, width do
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i, i + width - 1))
end
local length = redis.call('XLEN', KEYS[1])
local dropped = 0
if length > cap then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', length - cap)
  local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
  if #groups == 0 then
    dropped = #oldest
  else
    local function parse(id)
      local dash = string.find(id, '-', 1, true)
      return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
    end
    local lowMs, lowSeq
    for _, group in ipairs(groups) do
      for i = 1, #group, 2 do
        if group[i] == 'last-delivered-id' then
          local ms, seq = parse(group[i + 1])
          if lowMs == nil or ms < lowMs or (ms == lowMs and seq < lowSeq) then lowMs, lowSeq = ms, seq end
        end
      end
    end
    for _, entry in ipairs(oldest) do
      local ms, seq = parse(entry[1])
      if ms > lowMs or (ms == lowMs and seq > lowSeq) then dropped = dropped + 1 end
    end
  end
  redis.call('XTRIM', KEYS[1], 'MAXLEN', cap)
end
return dropped
`

type AppendScript = (key: string, cap: number, width: number, ...fields: (string | Buffer)[]) => Promise<number>

/** Most events one script call appends: a long script would hold up every other client of Redis. */
const MAX_BATCH = 256

/** A warning per this many milliseconds at most while events are being dropped; debug lines in between. */
const WARN_EVERY = 1_000

/**
 * Writes a connection's events to its partition of the portal event streams. The
 * events of one event-loop turn go out together, one script call per partition, on
 * the server's one Redis command connection (in a cluster, its connection to the
 * portal slot's master: every partition is in that slot), which sends commands in
 * call order: a connection's events reach its partition in the order they happened,
 * and nothing waits for Redis (the connection's handling goes on while the append
 * travels). An append that fails (Redis away: the client keeps no offline queue) or
 * that pushed out an unread event is counted in `dropped`.
 */
export class EventWriter {
  /** Events lost: pushed out of a full partition before a portal group read them, or never written. */
  dropped = 0
  private readonly append: AppendScript
  /** Events per partition. */
  private readonly cap: number
  private inFlight = 0
  /** Events of this event-loop turn not yet sent, by partition key, in the order they happened. */
  private readonly batches = new Map<string, (string | Buffer)[][]>()
  private flushing: NodeJS.Immediate | undefined
  private onIdle: (() => void) | undefined
  private lastWarning = -Infinity
  private droppedSinceWarning = 0

  constructor(
    redis: RedisConnection,
    private readonly keys: Keys,
    private readonly instanceId: string,
    private readonly options: ResolvedServerPortalOptions,
    private readonly logger: Logger,
  ) {
    redis.defineCommand('meshPortalAppend', { lua: APPEND_EVENTS, numberOfKeys: 1 })
    const script = (redis as unknown as Record<string, AppendScript>).meshPortalAppend!
    this.append = script.bind(redis)
    this.cap = Math.ceil(options.maxBacklog / options.partitions)
  }

  /** A connection received its hello; an upgrade-authenticated one carries its user here. */
  connected(connection: Connection): void {
    this.write(EntryKind.CONNECTION, connection, { ...identityOf(connection), handshake: this.redacted(connection.handshake) })
  }

  /** The handshake without the headers `redactHeaders` keeps out of Redis; the same object when it has none of them. */
  private redacted(handshake: Handshake): Handshake {
    const { redactHeaders } = this.options
    if (!redactHeaders.some((name) => name in handshake.headers)) return handshake
    const headers: Record<string, unknown> = { ...handshake.headers }
    for (const name of redactHeaders) delete headers[name]
    return { ...handshake, headers: headers as Handshake['headers'] }
  }

  /** A `client.authenticate` succeeded. */
  authenticated(connection: Connection): void {
    this.write(EntryKind.AUTHENTICATION, connection, identityOf(connection))
  }

  /** A client message the middleware accepted, with the data as the middleware left it. */
  message(connection: Connection, type: string, data: unknown): void {
    const body: EntryBody = data === undefined ? { ...identityOf(connection), type } : { ...identityOf(connection), type, data }
    this.write(EntryKind.MESSAGE, connection, body)
  }

  /**
   * An announced connection closed, with the WebSocket close code and reason. Written
   * after its last messages: one still held by async middleware when the socket
   * closed is written (or dropped) first, so the disconnection stays last.
   */
  disconnected(connection: Connection): void {
    const write = (): void => this.write(EntryKind.DISCONNECTION, connection, { ...identityOf(connection), code: connection.closeCode ?? 1005, reason: connection.closeReason ?? '' })
    const tail = connection.messageTail
    if (tail === undefined) return write()
    // Counted as in flight, so that the server's close waits for it too.
    this.inFlight++
    void tail.then(write).finally(() => this.finished())
  }

  /** Resolves once every append already started has its answer (or its failure). */
  async settled(): Promise<void> {
    if (this.inFlight === 0) return
    await new Promise<void>((resolve) => (this.onIdle = resolve))
  }

  /**
   * The connections of an instance that died (a survivor cleaned it up): nobody wrote
   * their disconnections, so the survivor does, with code 1006 and no user (the dead
   * instance's record of it is gone). Their earlier events, written by the dead
   * instance long before its liveness expired, stay before them.
   */
  instanceDied(instanceId: string, connectionIds: readonly string[]): void {
    for (const id of connectionIds) this.write(EntryKind.DISCONNECTION, id, { code: 1006, reason: 'instance died' }, instanceId)
  }

  private write(kind: EntryKind, connection: Connection | string, body: EntryBody, instanceId = this.instanceId): void {
    const connectionId = typeof connection === 'string' ? connection : connection.id
    let fields: (string | Buffer)[]
    try {
      fields = entryFields(kind, connectionId, instanceId, body)
    } catch (error) {
      // A user object or message data msgpack cannot encode (a function, a BigInt out of range).
      this.lost(1, 'a portal event could not be encoded; dropped', { kind, connectionId, error })
      return
    }
    const key = this.keys.portalEvents(partitionOf(connectionId, this.options.partitions))
    const batch = this.batches.get(key)
    if (batch) batch.push(fields)
    else this.batches.set(key, [fields])
    // Counted from now: the server's close waits for events still in a batch too.
    this.inFlight++
    this.flushing ??= setImmediate(this.flush)
  }

  /**
   * One script call per partition for every event of the turn (at most MAX_BATCH a
   * call), instead of one per event: the calls go out on one connection in the
   * order of their first event, and each partition's events keep their order, so a
   * connection's events still reach its partition in the order they happened.
   */
  private readonly flush = (): void => {
    this.flushing = undefined
    for (const [key, entries] of this.batches) {
      for (let start = 0; start < entries.length; start += MAX_BATCH) this.send(key, entries.slice(start, start + MAX_BATCH))
    }
    this.batches.clear()
  }

  private send(key: string, entries: (string | Buffer)[][]): void {
    const count = entries.length
    this.append(key, this.cap, entries[0]!.length, ...entries.flat()).then(
      (dropped) => {
        if (dropped > 0) this.lost(dropped, 'portal backlog full: dropped events no portal group had read (see portal.maxBacklog)', { key, maxBacklog: this.options.maxBacklog })
      },
      (error: unknown) => this.lost(count, 'could not write portal events; dropped', { key, count, error }),
    ).finally(() => {
      this.inFlight -= count - 1
      this.finished()
    })
  }

  private finished(): void {
    if (--this.inFlight === 0) this.onIdle?.()
  }

  /**
   * Counts lost events and logs them: a warning at most once a second, with how
   * many were lost since the last one, so that a Redis outage or a portal-less
   * backlog under load is visible without a log line per event.
   */
  private lost(count: number, message: string, details: Record<string, unknown>): void {
    this.dropped += count
    this.droppedSinceWarning += count
    const now = performance.now()
    if (now - this.lastWarning < WARN_EVERY) {
      this.logger.debug?.(message, details)
      return
    }
    this.logger.warn?.(message, { ...details, droppedSinceLastWarning: this.droppedSinceWarning, droppedTotal: this.dropped })
    this.lastWarning = now
    this.droppedSinceWarning = 0
  }
}

function identityOf(connection: Connection): EntryIdentity {
  const userId = connection.userId
  return userId === undefined ? {} : { userId, user: connection.user }
}
