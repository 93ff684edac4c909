import type { Keys } from '../store/keys.js'
import { redisCall, type RedisConnection } from '../store/redis-client.js'

// Every consumer group of the event partitions with the events it has not been
// delivered yet, in one step. Redis keeps that count (`lag`) as the stream grows; it
// is unknown only after deletions in the group's unread range (portals never delete,
// but a hand-run XDEL could): the stream's length then stands in, an upper bound.
// Capped at the length too: events trimmed unread were dropped, not waiting.
// KEYS: the partition streams. Replies [group, backlog, group, backlog, ...], a group once per partition.
const READ_BACKLOG = `
local result = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local length = redis.call('XLEN', key)
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local name, lag
      for i = 1, #group, 2 do
        if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'lag' then lag = group[i + 1] end
      end
      if type(lag) ~= 'number' or lag > length then lag = length end
      result[#result + 1] = name
      result[#result + 1] = lag
    end
  end
end
return result
`

type ReadScript = (...keys: string[]) => Promise<Array<string | number>>

/**
 * How far behind each portal group is: the events of every partition stream not yet
 * delivered to it, summed. One script call; its cost grows with partitions × groups,
 * never with the events waiting.
 */
export class PortalBacklog {
  private readonly read: ReadScript

  constructor(
    redis: RedisConnection,
    private readonly keys: Keys,
    private readonly partitions: number,
  ) {
    // The key count is fixed in the definition, not passed first: with auto-pipelining (cluster
    // clients) ioredis groups a call by its first argument's slot, and a count's slot can be
    // another node's, which fails the whole pipeline ("same slots allocation group").
    redis.defineCommand('meshPortalBacklog', { lua: READ_BACKLOG, numberOfKeys: partitions })
    this.read = (redis as unknown as Record<string, ReadScript>).meshPortalBacklog!.bind(redis)
  }

  /** Group → events waiting for it, for every consumer group on the event streams. Rejects with `UNAVAILABLE` when Redis is away. */
  async byGroup(): Promise<Map<string, number>> {
    const keys = Array.from({ length: this.partitions }, (_, partition) => this.keys.portalEvents(partition))
    const flat = await redisCall(() => this.read(...keys))
    const backlog = new Map<string, number>()
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const group = String(flat[i])
      backlog.set(group, (backlog.get(group) ?? 0) + Number(flat[i + 1]))
    }
    return backlog
  }
}
