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
  notice(notice: Notice): void
}

const Kind = { DELIVER: 0, DELIVER_ALL: 1, NOTICE: 2, DELIVER_USERS: 3 } as const

/**
 * Messages between instances over the bus. Each instance listens on its own topic
 * (deliveries to and notices about its connections) and on the broadcast topic.
 * A message is `[originInstanceId, kind, ...]` in msgpack; a delivery carries the
 * already encoded frame, so no instance encodes it again for msgpack clients.
 */
export class Cluster {
  private readonly onMessage = (message: Uint8Array): void => this.receive(message)

  constructor(
    private readonly bus: MeshBus,
    private readonly keys: Keys,
    private readonly instanceId: string,
    private readonly handlers: ClusterHandlers,
    private readonly logger: Logger,
  ) {}

  /** Subscribes; if the bus is unreachable the subscriptions still take effect once it is back. */
  async start(): Promise<void> {
    await Promise.all([
      this.bus.subscribe(this.keys.instanceTopic(this.instanceId), this.onMessage),
      this.bus.subscribe(this.keys.broadcastTopic, this.onMessage),
    ])
  }

  async stop(): Promise<void> {
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

  notify(instanceId: string, notice: Notice): Promise<void> {
    return this.bus.publish(this.keys.instanceTopic(instanceId), this.pack([Kind.NOTICE, notice]))
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
    const [origin, kind, first, second] = message as [string, number, unknown, unknown]
    if (kind === Kind.DELIVER && isStringArray(first) && second instanceof Uint8Array) {
      this.handlers.deliver(first, second)
    } else if (kind === Kind.DELIVER_ALL && isStringArray(first) && second instanceof Uint8Array) {
      // Our own broadcasts were written locally already.
      if (origin !== this.instanceId) this.handlers.deliverAll(first, second)
    } else if (kind === Kind.DELIVER_USERS && isStringArray(first) && second instanceof Uint8Array) {
      if (origin !== this.instanceId) this.handlers.deliverUsers(first, second)
    } else if (kind === Kind.NOTICE && Array.isArray(first) && typeof first[1] === 'string') {
      this.handlers.notice(first as Notice)
    } else {
      this.logger.warn?.('ignored a malformed bus message', { origin, kind })
    }
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}
