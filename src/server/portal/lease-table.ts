import { publishCommand, type RedisConnection } from '../store/redis-client.js'
import type { Keys } from '../store/keys.js'
import { DEFAULT_PARTITIONS, fnv1a, parseAnnouncement, type Announcement } from './stream-format.js'

// One heartbeat: announces the portal until Redis time + ttl, drops announcements
// dead for more than an hour, and returns what every portal decides by: Redis time,
// the servers' config and the live announcements (by Redis time, so that portals
// with skewed clocks agree on who is alive).
// A portal that was not live, or whose announcement changed (its commands), says
// so on the registry topic: servers then read the registry at once, instead of
// answering NOT_FOUND or UNAVAILABLE until their next periodic read.
// KEYS: liveness zset, registry hash, config hash. ARGV: portal id, ttl, announcement JSON, registry topic,
// publish command (SPUBLISH in a cluster: the topic is in the portal slot, as the keys).
// Replies [now, partitions or '', distributeLoad or '', [id, announcement, ...]].
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wasLive = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0') > now
local changed = not wasLive or redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3]
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - 3600000))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
local announced = {}
for _, id in ipairs(live) do
  local announcement = redis.call('HGET', KEYS[2], id)
  if announcement then
    announced[#announced + 1] = id
    announced[#announced + 1] = announcement
  end
end
local config = redis.call('HMGET', KEYS[3], 'partitions', 'distributeLoad')
if changed then redis.call(ARGV[5], ARGV[4], ARGV[1]) end
return {string.format('%.0f', now), config[1] or '', config[2] or '', announced}
`

// Acquires free leases and renews held ones. A lease whose holder is no longer a
// live portal (its announcement expired: killed, or cut off from Redis) is taken
// too, without waiting out the few ms its lease outlives the announcement.
// 2: renewed (it was still ours), 1: acquired (whatever the last holder left pending
// must be claimed), 0: held by another live portal.
// KEYS: liveness zset, lease keys... ARGV: portal id, ttl.
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i - 1] = 2
  else
    local alive = holder and tonumber(redis.call('ZSCORE', KEYS[1], holder) or '0') > now
    if alive then
      out[i - 1] = 0
    else
      redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
      out[i - 1] = 1
    end
  end
end
return out
`

// Deletes the leases this portal still holds (compare and delete).
// KEYS: lease keys. ARGV: portal id.
const RELEASE = `
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
`

// Stops being live at once, so that servers and the other portals stop counting on
// it, and deletes its consumer from the streams' groups where it has nothing pending
// (deleting one with pending entries would drop them from the group). The
// announcement stays, dead, for the hour announcements of dead portals are kept:
// its commands are UNAVAILABLE until a portal has them again (a portal restarting
// in a deploy), not NOT_FOUND as names nobody ever registered.
// KEYS: liveness zset, registry hash, stream keys... ARGV: portal id, group, registry topic, publish command.
const LEAVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1]) end
redis.call(ARGV[4], ARGV[3], ARGV[1])
for i = 3, #KEYS do
  local ok, pending = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[2], '-', '+', 1, ARGV[1])
  if ok and #pending == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[2], ARGV[1]) end
end
return 1
`

/** What one heartbeat learnt. */
export interface HeartbeatView {
  /** Redis time, ms. */
  now: number
  partitions: number
  distributeLoad: boolean
  /** Live portals (every group) by id. */
  live: Map<string, Announcement>
}

export const LeaseResult = { LOST: 0, ACQUIRED: 1, RENEWED: 2 } as const
export type LeaseResult = (typeof LeaseResult)[keyof typeof LeaseResult]

type Script = (numberOfKeys: number, ...args: Array<string | number>) => Promise<unknown>

/**
 * The Redis side of a portal's membership: its announcement (liveness + registry),
 * the config the servers wrote, and its partition leases. Every step is one script,
 * so a portal's view and its writes are taken at one Redis time.
 *
 * The scripts take their key count first. With auto-pipelining (cluster clients)
 * ioredis groups such a call by the slot of that count, which would fail a pipeline
 * mixing it with a command of another node; the portal's own connection sends only
 * portal-slot (and keyless) commands, so its pipelines never mix nodes.
 */
export class LeaseTable {
  private readonly scripts: Record<'heartbeat' | 'take' | 'release' | 'leave', Script>
  private readonly publish: 'SPUBLISH' | 'PUBLISH'

  constructor(
    redis: RedisConnection,
    private readonly keys: Keys,
    private readonly group: string,
    private readonly portalId: string,
    /** Each lease's (and the announcement's) TTL, ms. */
    readonly ttl: number,
  ) {
    this.publish = publishCommand(redis)
    const lua = { heartbeat: HEARTBEAT, take: TAKE, release: RELEASE, leave: LEAVE }
    const commands = redis as unknown as Record<string, Script>
    for (const [name, source] of Object.entries(lua)) redis.defineCommand(`meshPortal_${name}`, { lua: source })
    this.scripts = {
      heartbeat: commands.meshPortal_heartbeat!.bind(redis),
      take: commands.meshPortal_take!.bind(redis),
      release: commands.meshPortal_release!.bind(redis),
      leave: commands.meshPortal_leave!.bind(redis),
    }
  }

  async heartbeat(announcement: Announcement): Promise<HeartbeatView> {
    const { portalLiveness, portalRegistry, portalConfig } = this.keys
    const reply = (await this.scripts.heartbeat(3, portalLiveness, portalRegistry, portalConfig, this.portalId, this.ttl, JSON.stringify(announcement), this.keys.portalRegistryChanges, this.publish)) as [string, string, string, string[]]
    const [now, partitions, distributeLoad, announced] = reply
    const live = new Map<string, Announcement>()
    for (let i = 0; i + 1 < announced.length; i += 2) {
      const parsed = parseAnnouncement(announced[i + 1])
      if (parsed) live.set(announced[i]!, parsed)
    }
    const count = Number(partitions)
    return {
      now: Number(now),
      // Absent or nonsense (written by hand): the servers' default.
      partitions: Number.isSafeInteger(count) && count >= 1 ? count : DEFAULT_PARTITIONS,
      distributeLoad: distributeLoad !== '0',
      live,
    }
  }

  /** Renews or acquires these partitions' leases, one result per partition. */
  async take(partitions: readonly number[]): Promise<LeaseResult[]> {
    if (partitions.length === 0) return []
    const keys = partitions.map((p) => this.keys.portalLease(this.group, p))
    return (await this.scripts.take(keys.length + 1, this.keys.portalLiveness, ...keys, this.portalId, this.ttl)) as LeaseResult[]
  }

  async release(partitions: readonly number[]): Promise<void> {
    if (partitions.length === 0) return
    const keys = partitions.map((p) => this.keys.portalLease(this.group, p))
    await this.scripts.release(keys.length, ...keys, this.portalId)
  }

  /** Leaves the registry; `streams`: where its consumer may be deleted if it has nothing pending. */
  async leave(streams: readonly string[]): Promise<void> {
    await this.scripts.leave(streams.length + 2, this.keys.portalLiveness, this.keys.portalRegistry, ...streams, this.portalId, this.group, this.keys.portalRegistryChanges, this.publish)
  }
}

/**
 * The partitions this portal should hold. With `distributeLoad`, rendezvous hashing
 * over the group's live portals: partition p goes to the portal with the highest
 * `rendezvousScore(<portal id>:<p>)` (ties: the greater id), so a portal joining or
 * leaving moves only its own share. Without it, the group's oldest live portal (smallest `since`, then id)
 * holds every partition and the others stand by.
 */
export function preferredPartitions(view: HeartbeatView, group: string, portalId: string): number[] {
  const members = [...view.live].filter(([, announcement]) => announcement.group === group)
  if (!members.some(([id]) => id === portalId)) return []
  const all = Array.from({ length: view.partitions }, (_, p) => p)
  if (!view.distributeLoad) return activePortal(members) === portalId ? all : []
  return all.filter((p) => {
    let best = ''
    let bestScore = -1
    for (const [id] of members) {
      const score = rendezvousScore(`${id}:${p}`)
      if (score > bestScore || (score === bestScore && id > best)) {
        best = id
        bestScore = score
      }
    }
    return best === portalId
  })
}

/** The portal of a group that works while the others stand by (without `distributeLoad`). */
export function activePortal(members: ReadonlyArray<readonly [string, Announcement]>): string | undefined {
  let active: readonly [string, Announcement] | undefined
  for (const member of members) {
    if (!active || member[1].since < active[1].since || (member[1].since === active[1].since && member[0] < active[0])) active = member
  }
  return active?.[0]
}

/**
 * FNV-1a (32 bits) of the UTF-8 bytes, then murmur3's 32-bit finalizer. FNV-1a alone
 * mixes its last bytes poorly: for two portal ids, which one scores higher barely
 * depends on the `:<p>` suffix, so in about 4 pairs of 10 one portal won all 16
 * partitions (measured over 2000 random pairs of ids). The finalizer makes the split
 * binomial, as rendezvous hashing assumes.
 */
export function rendezvousScore(text: string): number {
  let hash = fnv1a(text)
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return hash >>> 0
}
