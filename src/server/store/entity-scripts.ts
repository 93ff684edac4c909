// Lua scripts of RedisStore on one user's keys or one channel's keys: each runs in
// that entity's slot (keys.ts), the channel's bus topic included.

// Keeps a message in a user's stream and reads the user's connections in one step:
// a connection registered afterwards finds the message when it reads the stream,
// one registered before is in the reply, so no connection misses it. With
// ARGV[4] = '1' the message is kept only if the user has no connection.
// KEYS: the user's connections set, the user's pending stream.
// ARGV: message, max messages, max age (ms), only if offline ('1' or '0').
// Replies [id or '', dropped count, connection ids].
const KEEP_USER_MESSAGE = `
local connections = redis.call('SMEMBERS', KEYS[1])
if ARGV[4] == '1' and #connections > 0 then return {'', 0, connections} end
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
local dropped = redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[2])
dropped = dropped + redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', oldest))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {id, dropped, connections}
`

// The epoch rule of a channel write, run first by both write scripts below.
// KEYS: sequence, base, history, epoch.
// A new channel's counter starts at the server time in microseconds, so offsets
// keep increasing even if Redis restarts empty.
// Offsets are never handed out twice: replication is asynchronous, so a replica
// promoted by a failover (or a Redis restarted from an older snapshot) may lack the
// last writes its predecessor acknowledged and published, and would give their offsets
// to other messages, which clients would drop as repeats. The epoch holds the
// replication id of the process that wrote last; when another process writes, the
// counter and the base jump to the server time in microseconds, past any offset handed
// out before (a channel takes far fewer than a million writes a second), and clients
// see the jump as a gap (`recovery` with `complete: false`). A slot moved here by a
// resharding jumps once too, though MIGRATE lost nothing: it cannot be told apart.
// Lua 5.1 turns large numbers into strings as "%.14g" (1.7e+15): offsets are
// formatted explicitly wherever they become strings.
const CHANNEL_EPOCH = `
local writer = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
local epoch = redis.call('GET', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 or (epoch and epoch ~= writer) then
  local now = redis.call('TIME')
  local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
  if micros > tonumber(redis.call('GET', KEYS[1]) or '0') then
    local base = string.format('%.0f', micros)
    redis.call('SET', KEYS[1], base)
    redis.call('SET', KEYS[2], base)
  end
end
if epoch ~= writer then redis.call('SET', KEYS[4], writer) end
`

// Assigns the next offset, keeps the newest N, publishes: one atomic step.
// KEYS: sequence, base, history, epoch. ARGV: message bytes, history limit, bus topic
// (the channel's: same slot), publish command (PUBLISH, or SPUBLISH in a cluster).
const WRITE_CHANNEL = `${CHANNEL_EPOCH}
local offset = string.format('%.0f', redis.call('INCR', KEYS[1]))
local entry = offset .. ':' .. ARGV[1]
local limit = tonumber(ARGV[2])
if limit > 0 then
  redis.call('LPUSH', KEYS[3], entry)
  redis.call('LTRIM', KEYS[3], 0, limit - 1)
else
  redis.call('DEL', KEYS[3])
end
redis.call(ARGV[4], ARGV[3], entry)
return offset
`

// WRITE_CHANNEL for a batch of messages (channel-write-batches.ts gathers them): the
// next offsets in order, each message's own history limit applied in order, one
// publish each; the same as writing them one at a time. A run of messages with the
// same limit is pushed at once and trimmed once, which leaves the list as pushing and
// trimming each would.
// KEYS: as WRITE_CHANNEL. ARGV: bus topic, publish command, then per message its
// history limit and its bytes. Replies the last message's offset (the others precede it).
const WRITE_CHANNEL_BATCH = `${CHANNEL_EPOCH}
local count = (#ARGV - 2) / 2
local last = redis.call('INCRBY', KEYS[1], count)
local entries = {}
for i = 1, count do entries[i] = string.format('%.0f', last - count + i) .. ':' .. ARGV[2 + 2 * i] end
local i = 1
while i <= count do
  local limit = ARGV[1 + 2 * i]
  local j = i
  while j < count and ARGV[3 + 2 * j] == limit do j = j + 1 end
  limit = tonumber(limit)
  if limit > 0 then
    redis.call('LPUSH', KEYS[3], unpack(entries, math.max(i, j - limit + 1), j))
    redis.call('LTRIM', KEYS[3], 0, limit - 1)
  else
    redis.call('DEL', KEYS[3])
  end
  i = j + 1
end
for k = 1, count do redis.call(ARGV[2], ARGV[1], entries[k]) end
return string.format('%.0f', last)
`

// The latest offset, the base, and the newest retained entries a reader asks for, in
// one atomic step. Offsets are contiguous and history keeps the newest, so the
// entries after `after` are the first offset − max(after, base) of the list: found by
// position, never by scanning. Entries are read in chunks so that a byte budget
// stops the read early instead of loading every candidate first.
// KEYS: sequence, base, history. ARGV: limit (negative: all), after ('' for none), max message bytes ('' for no cap).
// Replies [offset, base, entry...], or [] for a channel that never had a message.
const READ_CHANNEL = `
local offset = redis.call('GET', KEYS[1])
if not offset then return {} end
local base = redis.call('GET', KEYS[2]) or '0'
local count = tonumber(ARGV[1])
if count < 0 then count = redis.call('LLEN', KEYS[3]) end
if ARGV[2] ~= '' then count = math.min(count, tonumber(offset) - math.max(tonumber(ARGV[2]), tonumber(base))) end
local budget = tonumber(ARGV[3])
local result = {offset, base}
local index = 0
while index < count do
  local wanted = math.min(count - index, 128)
  local batch = redis.call('LRANGE', KEYS[3], index, index + wanted - 1)
  for _, entry in ipairs(batch) do
    if budget then
      budget = budget - (#entry - string.find(entry, ':', 1, true))
      if budget < 0 then return result end
    end
    result[#result + 1] = entry
  end
  if #batch < wanted then break end
  index = index + wanted
end
return result
`

/** Scripts on one user's or one channel's keys, by the command name they are defined under, with their number of keys (see CONNECTION_SCRIPTS). */
export const ENTITY_SCRIPTS = {
  meshKeepUserMessage: { keys: 2, lua: KEEP_USER_MESSAGE },
  meshWriteChannel: { keys: 4, lua: WRITE_CHANNEL },
  meshWriteChannelBatch: { keys: 4, lua: WRITE_CHANNEL_BATCH },
  meshReadChannel: { keys: 3, lua: READ_CHANNEL },
} as const
