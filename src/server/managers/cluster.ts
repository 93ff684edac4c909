import { ErrorCode, MeshError } from '../../shared/errors.js'
import { msgpackCodec } from '../../shared/msgpack-codec.js'
import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import type { MeshBus } from '../store/types.js'

/** What one instance tells another about a connection the receiver owns, so it can keep its own record. */
export type Notice =
  | ['room+', connectionId: string, room: string]
  | ['room-', connectionId: string, room: string]
  | ['rooms-', connectionId: string]
  | ['meta', connectionId: string, encodedMetadata: string]

export interface ClusterHandlers {
  /** Write a frame (msgpack bytes) to these local connections. */
  deliver(connectionIds: readonly string[], frame: Uint8Array): void
  /** Write a frame to every local connection except these. */
  deliverAll(excludedIds: readonly string[], frame: Uint8Array): void
  /** Write a user send to `'*'` to the local connections it is for, except these users'. */
  deliverUsers(excludedUserIds: readonly string[], frame: Uint8Array): void
  /** Write a frame to this instance's members of a room, except these ids. */
  deliverRoom(room: string, excludedIds: readonly string[], frame: Uint8Array): void
  /** Write a frame to this instance's connections of a user. */
  deliverUser(userId: string, frame: Uint8Array): void
  /** Apply a notice; an acknowledged one is answered once the returned promise settles. */
  notice(notice: Notice): void | Promise<void>
  /** This instance's part of an inspection another instance asked for (sent back as is). */
  inspect(limit: number): unknown
  /** Another instance's part of an inspection this instance asked for (not validated yet). */
  inspected(origin: string, requestId: number, part: unknown): void
}

const Kind = { DELIVER: 0, DELIVER_ALL: 1, NOTICE: 2, DELIVER_USERS: 3, DELIVER_ROOM: 4, DELIVER_USER: 5, ACKED_NOTICE: 6, ACK: 7, INSPECT: 8, INSPECTED: 9 } as const

/**
 * Messages between instances over the bus. Each instance listens on its own topic
 * (deliveries to and notices about its connections), on the broadcast topic, and on
 * the topics of the rooms and users it holds connections of (see LocalIndex).
 * A message is `[originInstanceId, kind, ...]` in msgpack; a delivery carries the
 * already encoded frame, so no instance encodes it again for msgpack clients.
 */
export class Cluster {
  /** The receiver of every topic this instance listens on. */
  readonly onMessage = (message: Uint8Array): void => this.receive(message)
  /** Acknowledged notices waiting for their owner's reply, by request id. */
  private readonly awaiting = new Map<number, { resolve(): void; reject(error: MeshError): void }>()
  private nextRequest = 1
  private stopped = false

  constructor(
    private readonly bus: MeshBus,
    private readonly keys: Keys,
    private readonly instanceId: string,
    private readonly handlers: ClusterHandlers,
    private readonly logger: Logger,
    /** Milliseconds an acknowledged notice waits for its owner (the server's `redisTimeout`). */
    private readonly ackTimeout = 5_000,
  ) {}

  /** Subscribes; if the bus is unreachable the subscriptions still take effect once it is back. */
  async start(): Promise<void> {
    await Promise.all([
      this.bus.subscribe(this.keys.instanceTopic(this.instanceId), this.onMessage),
      this.bus.subscribe(this.keys.broadcastTopic, this.onMessage),
    ])
  }

  /** Unsubscribes; changes still waiting for their owner's confirmation reject with `UNAVAILABLE` now, not after the timeout. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const waiting of [...this.awaiting.values()]) {
      waiting.reject(closedBeforeConfirmation())
    }
    await Promise.allSettled([
      this.bus.unsubscribe(this.keys.instanceTopic(this.instanceId), this.onMessage),
      this.bus.unsubscribe(this.keys.broadcastTopic, this.onMessage),
    ])
  }

  deliver(instanceId: string, connectionIds: readonly string[], frame: Uint8Array): Promise<void> {
    return this.bus.publish(this.keys.instanceTopic(instanceId), this.pack([Kind.DELIVER, connectionIds, frame]))
  }

  deliverAll(excludedIds: readonly string[], frame: Uint8Array): Promise<void> {
    return this.bus.publish(this.keys.broadcastTopic, this.pack([Kind.DELIVER_ALL, excludedIds, frame]))
  }

  deliverUsers(excludedUserIds: readonly string[], frame: Uint8Array): Promise<void> {
    return this.bus.publish(this.keys.broadcastTopic, this.pack([Kind.DELIVER_USERS, excludedUserIds, frame]))
  }

  /** One publish to a room's topic: every instance holding members of the room gets it, no other. */
  deliverRoom(room: string, excludedIds: readonly string[], frame: Uint8Array): Promise<void> {
    return this.bus.publish(this.keys.roomTopic(room), this.pack([Kind.DELIVER_ROOM, room, excludedIds, frame]))
  }

  /** One publish to a user's topic: every instance holding connections of the user gets it. */
  deliverUser(userId: string, frame: Uint8Array): Promise<void> {
    return this.bus.publish(this.keys.userTopic(userId), this.pack([Kind.DELIVER_USER, userId, frame]))
  }

  notify(instanceId: string, notice: Notice): Promise<void> {
    return this.bus.publish(this.keys.instanceTopic(instanceId), this.pack([Kind.NOTICE, notice]))
  }

  /**
   * A notice the owner answers once it has applied it (for `room+`: once it listens
   * on the room's topic), so that a broadcast started after this resolves reaches
   * the connection. Rejects with `UNAVAILABLE` when no answer came within the
   * timeout: the owner may be dead (its connections are then cleaned up) or cut off
   * from Redis, and the caller cannot know whether the change is routed yet. The
   * store write already happened, so retrying (the changes are idempotent) is safe.
   */
  notifyAcknowledged(instanceId: string, notice: Notice): Promise<void> {
    if (this.stopped) return Promise.reject(closedBeforeConfirmation())
    const id = this.nextRequest++
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.awaiting.delete(id)
        reject(new MeshError(ErrorCode.UNAVAILABLE, 'The instance owning the connection did not confirm the change in time', { data: { cause: 'TIMEOUT' } }))
      }, this.ackTimeout)
      const settle = (): void => {
        clearTimeout(timer)
        this.awaiting.delete(id)
      }
      this.awaiting.set(id, {
        resolve: () => (settle(), resolve()),
        reject: (error) => (settle(), reject(error)),
      })
      this.bus.publish(this.keys.instanceTopic(instanceId), this.pack([Kind.ACKED_NOTICE, id, notice])).catch((error: unknown) => {
        this.awaiting.get(id)?.reject(error instanceof MeshError ? error : new MeshError(ErrorCode.UNAVAILABLE, 'The bus is unavailable', { cause: error }))
      })
    })
  }

  /**
   * Asks every other instance for its part of an inspection: one publish on the
   * broadcast topic; each answers on this instance's topic (see `inspected`). An
   * instance of an older version ignores the kind, so it simply does not answer.
   */
  requestInspection(requestId: number, limit: number): Promise<void> {
    return this.bus.publish(this.keys.broadcastTopic, this.pack([Kind.INSPECT, requestId, limit]))
  }

  private answerInspection(origin: string, requestId: number, limit: number): void {
    let part: unknown
    try {
      part = this.handlers.inspect(limit)
    } catch (error) {
      this.logger.warn?.('could not describe this instance for an inspection', { origin, error })
      return
    }
    // Not answered: the asker stops waiting after its timeout and reports a partial view.
    this.bus.publish(this.keys.instanceTopic(origin), this.pack([Kind.INSPECTED, requestId, part])).catch((error: unknown) => this.logger.debug?.('could not answer an inspection', { origin, error }))
  }

  private answer(origin: string, requestId: number, notice: Notice): void {
    Promise.resolve(this.handlers.notice(notice))
      .then(() => this.bus.publish(this.keys.instanceTopic(origin), this.pack([Kind.ACK, requestId])))
      // No answer: the sender's wait times out with UNAVAILABLE, which is what it would have to say anyway.
      .catch((error: unknown) => this.logger.warn?.('could not apply or confirm a notice', { origin, error }))
  }

  private pack(message: unknown[]): Uint8Array {
    return msgpackCodec.encode([this.instanceId, ...message]) as Uint8Array
  }

  private receive(raw: Uint8Array): void {
    let message: unknown
    try {
      message = msgpackCodec.decode(raw)
    } catch {
      message = undefined
    }
    if (!Array.isArray(message) || typeof message[0] !== 'string') {
      this.logger.warn?.('ignored a malformed bus message')
      return
    }
    const [origin, kind, first, second, third] = message as [string, number, unknown, unknown, unknown]
    if (kind === Kind.DELIVER_ROOM && typeof first === 'string' && isStringArray(second) && third instanceof Uint8Array) {
      // Our own room broadcasts were written locally already.
      if (origin !== this.instanceId) this.handlers.deliverRoom(first, second, third)
    } else if (kind === Kind.DELIVER_USER && typeof first === 'string' && second instanceof Uint8Array) {
      if (origin !== this.instanceId) this.handlers.deliverUser(first, second)
    } else if (kind === Kind.DELIVER && isStringArray(first) && second instanceof Uint8Array) {
      this.handlers.deliver(first, second)
    } else if (kind === Kind.DELIVER_ALL && isStringArray(first) && second instanceof Uint8Array) {
      // Our own broadcasts were written locally already.
      if (origin !== this.instanceId) this.handlers.deliverAll(first, second)
    } else if (kind === Kind.DELIVER_USERS && isStringArray(first) && second instanceof Uint8Array) {
      if (origin !== this.instanceId) this.handlers.deliverUsers(first, second)
    } else if (kind === Kind.NOTICE && Array.isArray(first) && typeof first[1] === 'string') {
      void Promise.resolve(this.handlers.notice(first as Notice)).catch((error: unknown) => this.logger.warn?.('could not apply a notice', { error }))
    } else if (kind === Kind.ACKED_NOTICE && typeof first === 'number' && Array.isArray(second) && typeof second[1] === 'string') {
      this.answer(origin, first, second as Notice)
    } else if (kind === Kind.ACK && typeof first === 'number') {
      this.awaiting.get(first)?.resolve()
    } else if (kind === Kind.INSPECT && typeof first === 'number' && typeof second === 'number') {
      // The asker describes itself without the bus.
      if (origin !== this.instanceId) this.answerInspection(origin, first, second)
    } else if (kind === Kind.INSPECTED && typeof first === 'number') {
      this.handlers.inspected(origin, first, second)
    } else {
      this.logger.warn?.('ignored a malformed bus message', { origin, kind })
    }
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

function closedBeforeConfirmation(): MeshError {
  return new MeshError(ErrorCode.UNAVAILABLE, 'The server closed before the owning instance confirmed the change', { data: { cause: 'CLOSED' } })
}
