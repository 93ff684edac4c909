/**
 * Every Redis key and channel name meshkit uses, built from one prefix (the
 * `namespace` option) so that deployments sharing a Redis never meet, and so that
 * Redis Cluster hash tags could be added here alone.
 */
export class Keys {
  // Each kind of key has its own prefix and ends with the id or name it is about,
  // so no id or name, whatever characters it holds, can make two keys collide.
  constructor(readonly namespace: string) {
    if (!/^[\w.:-]+$/.test(namespace)) {
      throw new RangeError(`namespace may use letters, digits, "_", ".", ":" and "-", got "${namespace}"`)
    }
  }

  /** Set of every instance that registered and has not been cleaned up. */
  get instances(): string {
    return `${this.namespace}:instances`
  }

  /** Liveness key of one instance; it expires when the instance stops refreshing it. */
  instance(instanceId: string): string {
    return `${this.namespace}:instance:${instanceId}`
  }

  /** Connections an instance owns (reverse index, for cleaning up after it dies). */
  instanceConnections(instanceId: string): string {
    return `${this.namespace}:instance-connections:${instanceId}`
  }

  /** Lock a survivor holds while it cleans up a dead instance. */
  cleanupLock(instanceId: string): string {
    return `${this.namespace}:instance-cleanup:${instanceId}`
  }

  /** Hash: connection id → owning instance id (routing only). */
  get connections(): string {
    return `${this.namespace}:connections`
  }

  /** Hash: connection id → encoded metadata. Never shares storage with routing. */
  get metadata(): string {
    return `${this.namespace}:metadata`
  }

  /** Set of connection ids in a room. */
  room(room: string): string {
    return `${this.namespace}:room:${room}`
  }

  /** Set of the rooms a connection is in (reverse index). */
  connectionRooms(connectionId: string): string {
    return `${this.namespace}:connection-rooms:${connectionId}`
  }

  /** Hash of a presence-enabled room: connection id → encoded presence entry. */
  presence(room: string): string {
    return `${this.namespace}:presence:${room}`
  }

  /** Set of the rooms a connection has presence in (reverse index, for its leave). */
  connectionPresence(connectionId: string): string {
    return `${this.namespace}:connection-presence:${connectionId}`
  }

  /** Prefix of user connection sets (for scripts that build them from a user id). */
  get userConnectionsPrefix(): string {
    return this.userConnections('')
  }

  /** Prefix of room keys, stripped from reverse-index entries. */
  get roomPrefix(): string {
    return `${this.namespace}:room:`
  }

  /** Set of a user's connection ids. */
  userConnections(userId: string): string {
    return `${this.namespace}:user-connections:${userId}`
  }

  /** Hash: connection id → user id, for the connections that authenticated. */
  get connectionUsers(): string {
    return `${this.namespace}:connection-users`
  }

  /** Set of users with at least one connection (kept with `storeConnectedUsers`). */
  get usersOnline(): string {
    return `${this.namespace}:users-online`
  }

  /** Stream of messages kept for a user who was offline when they were sent. */
  userPending(userId: string): string {
    return `${this.namespace}:user-pending:${userId}`
  }

  /** Counter of a channel's offsets. */
  channelSequence(channel: string): string {
    return `${this.namespace}:channel-seq:${channel}`
  }

  /** The offset a channel's counter started from (its first message has base + 1). */
  channelBase(channel: string): string {
    return `${this.namespace}:channel-base:${channel}`
  }

  /** List of a channel's retained messages, newest first. */
  channelHistory(channel: string): string {
    return `${this.namespace}:channel-history:${channel}`
  }

  /** Bus topic of a channel's live messages. */
  channelTopic(channel: string): string {
    return `${this.namespace}:bus:channel:${channel}`
  }

  /** Bus topic every instance listens to (broadcasts to everyone). */
  get broadcastTopic(): string {
    return `${this.namespace}:bus:broadcast`
  }

  /**
   * Bus topic of a room: every instance holding at least one member of the room
   * listens on it, so a room broadcast is one publish that reaches exactly those.
   */
  roomTopic(room: string): string {
    return `${this.namespace}:bus:room:${room}`
  }

  /** Bus topic of a user: every instance holding an authenticated connection of the user listens on it (with or without sync). */
  userTopic(userId: string): string {
    return `${this.namespace}:bus:user:${userId}`
  }

  /** Bus topic of one instance (deliveries to its connections, notices about them). */
  instanceTopic(instanceId: string): string {
    return `${this.namespace}:bus:instance:${instanceId}`
  }

  /**
   * Stream of one partition of the portal events (connections, authentications,
   * client messages, disconnections). A connection's events all go to the partition
   * its id hashes to (see `partitionOf`), so they stay in order.
   */
  portalEvents(partition: number): string {
    return `${this.namespace}:portal:events:${partition}`
  }

  /**
   * Stream of the forwarded calls of one command to one portal group. Group names
   * have no ":" (checked by the Portal), so a group and a command name cannot
   * combine into another pair's key.
   */
  portalCommands(group: string, command: string): string {
    return `${this.namespace}:portal:commands:${group}:${command}`
  }

  /** Lease of one event partition to one portal of a group: the portal id, with a TTL. */
  portalLease(group: string, partition: number): string {
    return `${this.namespace}:portal:lease:${group}:${partition}`
  }

  /** Sorted set: portal id → the Redis time (ms) its announcement expires. */
  get portalLiveness(): string {
    return `${this.namespace}:portal:liveness`
  }

  /** Hash: portal id → its announcement (JSON: group, commands, since). */
  get portalRegistry(): string {
    return `${this.namespace}:portal:registry`
  }

  /** Hash of what the servers decided for every portal: `partitions`, `distributeLoad`. */
  get portalConfig(): string {
    return `${this.namespace}:portal:config`
  }

  /** Bus topic where a portal announces that it joined, changed its commands or left, so servers read the registry at once. */
  get portalRegistryChanges(): string {
    return `${this.namespace}:bus:portal-registry`
  }

  /** Bus topic where portals publish the replies to one instance's forwarded commands. */
  portalReplies(instanceId: string): string {
    return `${this.namespace}:bus:portal-reply:${instanceId}`
  }
}
