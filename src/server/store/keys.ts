/**
 * Every Redis key and channel name meshkit uses, built here alone.
 *
 * Layout: `<ns>:{<kind>:<name>}:<what>`. Every key starts with the namespace (so an
 * ACL pattern `~<ns>:*` or a `SCAN MATCH <ns>:*` covers a deployment), and carries a
 * Redis Cluster hash tag `{<kind>:<name>}`: all the keys of one room, channel, user,
 * connection or instance share a slot (so a script may touch them together), and
 * different names spread over all 16384 slots. A tag is never empty (the kind is in
 * it), and the name stays readable. Keys with no owner use the namespace itself as
 * their tag (`<ns>:{<ns>}:instances`); every portal key shares `{<ns>:portal}`.
 *
 * Bus topics follow the same rule: a topic that a script publishes on (a channel's,
 * the portal registry's) is in the slot of that script's keys, as sharded pub/sub in a
 * cluster requires.
 */
export class Keys {
  // Within one kind every key ends with "}:" and a suffix of its own, so no name,
  // whatever characters it holds (even "}"), can make two keys collide: a "}" in a
  // name only moves the tag's end, which at worst puts two names in one slot.
  constructor(readonly namespace: string) {
    if (!/^[\w.:-]+$/.test(namespace)) {
      throw new RangeError(`namespace may use letters, digits, "_", ".", ":" and "-", got "${namespace}"`)
    }
  }

  private of(kind: string, name: string, what: string): string {
    return `${this.namespace}:{${kind}:${name}}:${what}`
  }

  private global(what: string): string {
    return `${this.namespace}:{${this.namespace}}:${what}`
  }

  private portal(what: string): string {
    return `${this.namespace}:{${this.namespace}:portal}:${what}`
  }

  /** Set of every instance that registered and has not been cleaned up. */
  get instances(): string {
    return this.global('instances')
  }

  /** Liveness key of one instance; it expires when the instance stops refreshing it. */
  instance(instanceId: string): string {
    return this.of('inst', instanceId, 'alive')
  }

  /** Connections an instance owns (reverse index, for cleaning up after it dies). */
  instanceConnections(instanceId: string): string {
    return this.of('inst', instanceId, 'connections')
  }

  /** Lock a survivor holds while it cleans up a dead instance. */
  cleanupLock(instanceId: string): string {
    return this.of('inst', instanceId, 'cleanup')
  }

  /**
   * Hash of one connection: `owner` (its instance id; present exactly while the
   * connection is registered), `meta` (encoded metadata), `user` (its user id, once
   * authenticated). One key, so per-connection writes check registration atomically.
   */
  connection(connectionId: string): string {
    return this.of('conn', connectionId, 'info')
  }

  /**
   * Set of every registered connection's id (an index for `getAllMetadata`, which
   * cannot scan keys across a cluster's nodes). Ids whose connection hash is gone
   * may linger after a crash mid-removal; readers skip them.
   */
  get connectionIds(): string {
    return this.global('connections')
  }

  /** Set of the rooms a connection is in (reverse index). */
  connectionRooms(connectionId: string): string {
    return this.of('conn', connectionId, 'rooms')
  }

  /** Set of the rooms a connection has presence in (reverse index, for its leave). */
  connectionPresence(connectionId: string): string {
    return this.of('conn', connectionId, 'presence')
  }

  /** Set of connection ids in a room. */
  room(room: string): string {
    return this.of('room', room, 'members')
  }

  /** Hash of a presence-enabled room: connection id → encoded presence entry. */
  presence(room: string): string {
    return this.of('room', room, 'presence')
  }

  /** Set of a user's connection ids. */
  userConnections(userId: string): string {
    return this.of('user', userId, 'connections')
  }

  /** Stream of messages kept for a user who was offline when they were sent. */
  userPending(userId: string): string {
    return this.of('user', userId, 'pending')
  }

  /** Set of users with at least one connection (kept with `storeConnectedUsers`). */
  get usersOnline(): string {
    return this.global('users-online')
  }

  /** Counter of a channel's offsets. */
  channelSequence(channel: string): string {
    return this.of('chan', channel, 'seq')
  }

  /** The offset a channel's counter started from (its first message has base + 1). */
  channelBase(channel: string): string {
    return this.of('chan', channel, 'base')
  }

  /**
   * The replication id (`master_replid`) of the Redis process that wrote the channel
   * last: a write on another process (a replica promoted by a failover, a restart, a slot
   * moved here) moves the offsets past any the last writer could have handed out.
   */
  channelEpoch(channel: string): string {
    return this.of('chan', channel, 'epoch')
  }

  /** List of a channel's retained messages, newest first. */
  channelHistory(channel: string): string {
    return this.of('chan', channel, 'history')
  }

  /** Bus topic of a channel's live messages, in the slot of the channel's keys (the write script publishes it). */
  channelTopic(channel: string): string {
    return this.of('chan', channel, 'bus')
  }

  /** Bus topic every instance listens to (broadcasts to everyone). */
  get broadcastTopic(): string {
    return this.global('bus:broadcast')
  }

  /**
   * Bus topic of a room: every instance holding at least one member of the room
   * listens on it, so a room broadcast is one publish that reaches exactly those.
   */
  roomTopic(room: string): string {
    return this.of('room', room, 'bus')
  }

  /** Bus topic of a user: every instance holding an authenticated connection of the user listens on it (with or without sync). */
  userTopic(userId: string): string {
    return this.of('user', userId, 'bus')
  }

  /** Bus topic of one instance (deliveries to its connections, notices about them). */
  instanceTopic(instanceId: string): string {
    return this.of('inst', instanceId, 'bus')
  }

  /**
   * Stream of one partition of the portal events (connections, authentications,
   * client messages, disconnections). A connection's events all go to the partition
   * its id hashes to (see `partitionOf`), so they stay in order.
   */
  portalEvents(partition: number): string {
    return this.portal(`events:${partition}`)
  }

  /**
   * Stream of the forwarded calls of one command to one portal group. Group names
   * have no ":" (checked by the Portal), so a group and a command name cannot
   * combine into another pair's key.
   */
  portalCommands(group: string, command: string): string {
    return this.portal(`commands:${group}:${command}`)
  }

  /** Lease of one event partition to one portal of a group: the portal id, with a TTL. */
  portalLease(group: string, partition: number): string {
    return this.portal(`lease:${group}:${partition}`)
  }

  /** Sorted set: portal id → the Redis time (ms) its announcement expires. */
  get portalLiveness(): string {
    return this.portal('liveness')
  }

  /** Hash: portal id → its announcement (JSON: group, commands, since). */
  get portalRegistry(): string {
    return this.portal('registry')
  }

  /** Hash of what the servers decided for every portal: `partitions`, `distributeLoad`. */
  get portalConfig(): string {
    return this.portal('config')
  }

  /** Bus topic where a portal announces that it joined, changed its commands or left, so servers read the registry at once (published by the heartbeat script: portal slot). */
  get portalRegistryChanges(): string {
    return this.portal('bus:registry')
  }

  /** Bus topic where portals publish the replies to one instance's forwarded commands. */
  portalReplies(instanceId: string): string {
    return this.of('inst', instanceId, 'bus:portal-reply')
  }
}
