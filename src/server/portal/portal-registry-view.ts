import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import { redisCall, type RedisConnection } from '../store/redis-client.js'
import { parseAnnouncement } from './stream-format.js'

// The live portals' ids and every announcement, judged by Redis time (the portals'
// clock for their liveness scores, so no server clock skew enters). Announcements
// dead for longer than ARGV[1] ms are removed on the way: nobody else cleans up after
// a portal that was killed rather than closed.
// KEYS: liveness zset, registry hash. ARGV: how long (ms) a dead portal's announcement is kept.
// Replies [live portal ids, [portal id, announcement JSON, ...]].
const READ_REGISTRY = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[1])))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
return {live, redis.call('HGETALL', KEYS[2])}
`

type ReadScript = (liveness: string, registry: string, keepDead: number) => Promise<[string[], string[]]>

/** An announcement of a portal that stopped heartbeating is removed after this long. */
const KEEP_DEAD_MS = 3_600_000

/**
 * This server's view of which portal groups handle which commands, read from the
 * portal registry at start and every `interval` ms (one read at a time). A command
 * is forwarded to the lexicographically first group with a live portal that
 * registered it; one that only dead (not yet cleaned) portals announced is
 * `UNAVAILABLE`; one nobody announced stays `NOT_FOUND`. A portal killed without
 * closing is noticed within its TTL plus one interval.
 */
export class PortalRegistryView {
  /** Command → groups with a live portal that registered it, sorted. */
  private live = new Map<string, string[]>()
  /** Commands some announcement, live or dead, names. */
  private announced = new Set<string>()
  /** Group → its portals whose announcement is live. */
  private portalsByGroup = new Map<string, number>()
  private readonly read: ReadScript
  private timer: ReturnType<typeof setInterval> | undefined
  private reading: Promise<void> | undefined
  /** A change was announced while a read ran: that read may predate it, so another follows. */
  private stale = false
  /** The read in flight covers a change a portal announced (see `changing`). */
  private changeRead = false
  private failing = false

  constructor(
    redis: RedisConnection,
    private readonly keys: Keys,
    private readonly logger: Logger,
    /** Runs after every successful read (the forwarder then fails calls whose group is gone). */
    private readonly refreshed: () => void,
    private readonly interval = 1_000,
  ) {
    redis.defineCommand('meshPortalRegistry', { lua: READ_REGISTRY, numberOfKeys: 2 })
    this.read = (redis as unknown as Record<string, ReadScript>).meshPortalRegistry!.bind(redis)
  }

  /** Reads the registry once (a failure is logged, not thrown: the timer retries) and keeps reading it every interval. */
  async start(): Promise<void> {
    this.timer ??= setInterval(() => void this.refresh(), this.interval)
    await this.refresh()
  }

  /** The group a call of this command goes to, if a live portal has it. */
  groupOf(command: string): string | undefined {
    return this.live.get(command)?.[0]
  }

  /** Whether a live portal of this group has this command. */
  isLive(group: string, command: string): boolean {
    return this.live.get(command)?.includes(group) ?? false
  }

  /** Group → how many of its portals are live, as of the last read. */
  get liveGroups(): ReadonlyMap<string, number> {
    return this.portalsByGroup
  }

  /** Whether any announcement, live or dead, names this command: then a call of it is a portal's to answer, or `UNAVAILABLE`. */
  isAnnounced(command: string): boolean {
    return this.announced.has(command)
  }

  /** Reads the registry now; while a read runs, one more follows it (it may have started before the change that asks for this one). */
  refresh(): Promise<void> {
    if (this.reading) this.stale = true
    else {
      this.reading = this.readUntilCurrent().finally(() => {
        this.reading = undefined
        this.changeRead = false
      })
    }
    return this.reading
  }

  /** A portal joined, changed its commands or left: read at once rather than at the next interval. */
  readonly onChange = (): void => {
    this.changeRead = true
    void this.refresh()
  }

  /**
   * The read of an announced change, while it runs: a command a portal registered a
   * moment ago must wait for it rather than get `NOT_FOUND` from the view before it.
   */
  changing(): Promise<void> | undefined {
    return this.changeRead ? this.reading : undefined
  }

  private async readUntilCurrent(): Promise<void> {
    do {
      this.stale = false
      await this.readOnce()
    } while (this.stale && this.timer !== undefined)
  }

  /** Stops the timer and waits for a read in flight. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.reading
  }

  private async readOnce(): Promise<void> {
    let reply: [string[], string[]]
    try {
      reply = await redisCall(() => this.read(this.keys.portalLiveness, this.keys.portalRegistry, KEEP_DEAD_MS))
    } catch (error) {
      // Logged once per outage; the last view stays (forwarding fails on its own while Redis is away).
      if (!this.failing) this.logger.warn?.('could not read the portal registry; keeping the last view', { error })
      this.failing = true
      return
    }
    this.failing = false
    const [liveIds, flat] = reply
    const alive = new Set(liveIds)
    const live = new Map<string, string[]>()
    const announced = new Set<string>()
    const portalsByGroup = new Map<string, number>()
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const announcement = parseAnnouncement(flat[i + 1])
      if (!announcement) continue
      if (alive.has(flat[i]!)) portalsByGroup.set(announcement.group, (portalsByGroup.get(announcement.group) ?? 0) + 1)
      for (const command of announcement.commands) {
        announced.add(command)
        if (!alive.has(flat[i]!)) continue
        const groups = live.get(command) ?? []
        if (!groups.includes(announcement.group)) groups.push(announcement.group)
        live.set(command, groups)
      }
    }
    for (const groups of live.values()) groups.sort()
    this.live = live
    this.announced = announced
    this.portalsByGroup = portalsByGroup
    this.refreshed()
  }
}
