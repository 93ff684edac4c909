import type { Redis } from 'ioredis'
import type { Connection } from '../connection.js'
import type { Handshake } from '../handshake.js'
import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import type { ResolvedServerPortalOptions } from './server-portal-options.js'
import { EntryKind, entryFields, partitionOf, type EntryBody, type EntryIdentity } from './stream-format.js'

// Appends one event to a partition, keeping the stream at most `cap` long. At the cap
// the oldest entries make room; each one that some consumer group has not been
// delivered yet (or every one, when no group exists: no portal ever read it) is a
// dropped event, and the reply counts them. Exact trimming (no "~"): the bound is
// what `maxBacklog` promises. Entries delivered but not yet acknowledged are trimmed
// without counting: a portal that holds them already has them.
// KEYS: the partition's stream. ARGV: cap, then the entry's fields and values.
const APPEND_EVENT = `
local cap = tonumber(ARGV[1])
local length = redis.call('XLEN', KEYS[1])
local dropped = 0
if length >= cap then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', length - cap + 1)
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
  redis.call('XTRIM', KEYS[1], 'MAXLEN', cap - 1)
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return dropped
`

type AppendScript = (key: string, cap: number, ...fields: (string | Buffer)[]) => Promise<number>

/** A warning per this many milliseconds at most while events are being dropped; debug lines in between. */
const WARN_EVERY = 1_000

/**
 * Writes a connection's events to its partition of the portal event streams. Every
 * append goes out at once on the server's one Redis command connection, which
 * sends commands in call order: a connection's events reach its partition in the
 * order they happened, and nothing waits for Redis (the connection's handling goes
 * on while the append travels). An append that fails (Redis away: the client keeps
 * no offline queue) or that pushed out an unread event is counted in `dropped`.
 */
export class EventWriter {
  /** Events lost: pushed out of a full partition before a portal group read them, or never written. */
  dropped = 0
  private readonly append: AppendScript
  /** Events per partition. */
  private readonly cap: number
  private inFlight = 0
  private onIdle: (() => void) | undefined
  private lastWarning = -Infinity
  private droppedSinceWarning = 0

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly instanceId: string,
    private readonly options: ResolvedServerPortalOptions,
    private readonly logger: Logger,
  ) {
    redis.defineCommand('meshPortalAppend', { lua: APPEND_EVENT, numberOfKeys: 1 })
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

  private write(kind: EntryKind, connection: Connection, body: EntryBody): void {
    let fields: (string | Buffer)[]
    try {
      fields = entryFields(kind, connection.id, this.instanceId, body)
    } catch (error) {
      // A user object or message data msgpack cannot encode (a function, a BigInt out of range).
      this.lost(1, 'a portal event could not be encoded; dropped', { kind, connectionId: connection.id, error })
      return
    }
    const key = this.keys.portalEvents(partitionOf(connection.id, this.options.partitions))
    this.inFlight++
    this.append(key, this.cap, ...fields).then(
      (dropped) => {
        if (dropped > 0) this.lost(dropped, 'portal backlog full: dropped events no portal group had read (see portal.maxBacklog)', { key, maxBacklog: this.options.maxBacklog })
      },
      (error: unknown) => this.lost(1, 'could not write a portal event; dropped', { kind, connectionId: connection.id, error }),
    ).finally(() => this.finished())
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
