// Lua scripts of RedisStore's per-connection writes.
//
// Per-connection writes happen only while the connection is registered, checked in
// the same step: a write that arrives after REMOVE_CONNECTION (a socket that closed
// while its authentication or a merge was running) is a no-op, whatever the timing.
// Each returns 1 if it wrote, 0 if the connection has no owner.
// KEYS: connections hash, the user's connections set, connection-users hash, online users set.
// ARGV: connection id, user id, "1" to list the user online.
const ADD_USER_CONNECTION = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[4], ARGV[2]) end
return 1
`

// KEYS: connections hash, metadata hash. ARGV: connection id, encoded metadata.
const SET_METADATA = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`

// KEYS: connections hash, room set, the connection's rooms set. ARGV: connection id, room.
const ADD_TO_ROOM = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
`

/** The conditional per-connection writes, by the MeshStore method that runs each. */
export const CONDITIONAL_WRITES = {
  addUserConnection: ADD_USER_CONNECTION,
  setMetadata: SET_METADATA,
  addToRoom: ADD_TO_ROOM,
} as const
