/** Per-message options, as Mesa's `new Message(op, data, type, { sync })`. */
export interface MessageOptions {
  /**
   * Mesa's opt-out of redelivery. meshkit never keeps a `client.send` (a single
   * connection) for redelivery anyway; `mesa.send` and `Dispatcher.dispatch` keep
   * every message to named users when their `sync` is enabled, so there they throw a
   * `TypeError` for `sync: false` rather than keep it against the caller's wish.
   * @default true
   */
  sync?: boolean
}

/**
 * Mesa's message: an opcode, its data and a type. On meshkit's wire only the type and
 * the data travel (as an event or a client message); the opcode is always 0, the only
 * one Mesa applications use (the others were Mesa's own heartbeats and handshakes).
 */
export class Message<D = Record<string, unknown>> {
  opcode: number
  data: D
  type: string | undefined
  /** Set on portal messages: the authenticated user id of the sender, if any. */
  clientId?: string
  options: Required<MessageOptions>

  constructor(opcode: number, data: D, type?: string, options: MessageOptions = {}) {
    this.opcode = opcode
    this.data = data
    this.type = type
    this.options = { sync: options.sync ?? true }
  }

  /** Mesa's JSON shape `{ op, d, t }`, for logs and tests; meshkit's wire does not use it. */
  serialize(): string {
    return JSON.stringify({ op: this.opcode, d: this.data, t: this.type })
  }
}

/**
 * The type a message travels under: meshkit events and client messages are named, so
 * a Mesa message must have a type (Mesa allowed none).
 */
export function wireType(message: Message<unknown>): string {
  if (!(message instanceof Message)) throw new TypeError('expected a Message')
  if (typeof message.type !== 'string' || message.type === '') {
    throw new TypeError('a Message needs a type on meshkit: new Message(0, data, "TYPE")')
  }
  if (message.opcode !== 0) throw new RangeError(`only opcode 0 can be sent on meshkit, got ${String(message.opcode)}`)
  return message.type
}

/** Kept messages of a connection or client, as Mesa's `client.messages`. */
export interface Messages {
  sent: Message<unknown>[]
  received: Message<unknown>[]
}

/** meshkit's stored `{ type, data }` pairs as Mesa `Message`s. */
export function toMessages(stored: { sent: readonly { type: string; data: unknown }[]; received: readonly { type: string; data: unknown }[] }, skip?: string): Messages {
  const convert = (list: readonly { type: string; data: unknown }[]): Message<unknown>[] =>
    list.filter((entry) => entry.type !== skip).map((entry) => new Message(0, entry.data, entry.type))
  return { sent: convert(stored.sent), received: convert(stored.received) }
}
