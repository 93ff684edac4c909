// Lua scripts of RedisStore's per-connection steps. Each touches the keys of one
// connection only (`{conn:<id>}`: its `info` hash and its reverse-index sets), so it
// runs on one node of a Redis Cluster; the other entity's keys (a room's members, a
// user's connections, an instance's index) are written by single-key commands
// around it, in the order redis-store.ts explains.
//
// Per-connection writes happen only while the connection is registered (its `info`
// hash has an `owner`), checked in the same step as the connection-side write: a
// write that arrives after REMOVE_CONNECTION's script (a socket that closed while
// its authentication or a merge was running) writes nothing on the connection's
// side and returns 0, whatever the timing; the caller then undoes its first step.

// KEYS: connection info. ARGV: instance id. Replies the previous owner (nil if none).
const ADD_CONNECTION = `
local previous = redis.call('HGET', KEYS[1], 'owner')
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('HDEL', KEYS[1], 'removed')
return previous
`

// First step of a removal: the connection stops being registered (every later
// conditional write fails) and its metadata goes, but what the removal must undo
// elsewhere stays readable (the owner moves to 'removed'; 'user' and the rooms set
// stay) until FORGET_CONNECTION: a removal that timed out or died half-way, run
// again (by this instance, or by the dead-instance sweep, which walks the owner's
// index), finds the same rooms, user and owner and finishes the job.
// KEYS: connection info, the connection's rooms set.
// Replies [owner or nil, user or nil, rooms].
const REMOVE_CONNECTION = `
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  redis.call('HSET', KEYS[1], 'removed', owner)
  redis.call('HDEL', KEYS[1], 'owner')
else
  owner = redis.call('HGET', KEYS[1], 'removed')
end
redis.call('HDEL', KEYS[1], 'meta')
return {owner, redis.call('HGET', KEYS[1], 'user'), redis.call('SMEMBERS', KEYS[2])}
`

// Last step of a removal, once rooms and user are undone: forgets the connection,
// unless it was registered again meanwhile (a write-back after an outage).
// KEYS: connection info, the connection's rooms set.
const FORGET_CONNECTION = `
if redis.call('HEXISTS', KEYS[1], 'owner') == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`

// KEYS: connection info. ARGV: user id.
const ADD_USER_CONNECTION = `
if redis.call('HEXISTS', KEYS[1], 'owner') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[1])
return 1
`

// KEYS: connection info. ARGV: encoded metadata.
const SET_METADATA = `
if redis.call('HEXISTS', KEYS[1], 'owner') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
return 1
`

// KEYS: connection info, the connection's rooms set. ARGV: room.
const ADD_TO_ROOM = `
if redis.call('HEXISTS', KEYS[1], 'owner') == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
`

// Empties a set and replies what it held (a connection leaving all its rooms or presences).
// KEYS: the set.
const TAKE_MEMBERS = `
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
`

// Removes a member and replies how many remain, in one step (a user's last connection going).
// KEYS: the set. ARGV: member.
const REMOVE_AND_COUNT = `
redis.call('SREM', KEYS[1], ARGV[1])
return redis.call('SCARD', KEYS[1])
`

/**
 * The single-slot scripts of RedisStore's per-connection steps, by the command name
 * they are defined under, with their fixed number of keys. Fixed, not passed per
 * call: ioredis's cluster auto-pipelining routes a command by its first argument,
 * which must then be the first key, not the key count.
 */
export const CONNECTION_SCRIPTS = {
  meshAddConnection: { keys: 1, lua: ADD_CONNECTION },
  meshRemoveConnection: { keys: 2, lua: REMOVE_CONNECTION },
  meshForgetConnection: { keys: 2, lua: FORGET_CONNECTION },
  meshAddUserConnection: { keys: 1, lua: ADD_USER_CONNECTION },
  meshSetMetadata: { keys: 1, lua: SET_METADATA },
  meshAddToRoom: { keys: 2, lua: ADD_TO_ROOM },
  meshTakeMembers: { keys: 1, lua: TAKE_MEMBERS },
  meshRemoveAndCount: { keys: 1, lua: REMOVE_AND_COUNT },
} as const
