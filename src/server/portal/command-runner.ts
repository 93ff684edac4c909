import { publishOn, type RedisConnection } from '../store/redis-client.js'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError } from '../../shared/errors.js'
import { RESERVED_PREFIX } from '../command-registry.js'
import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import { isCommandBody, type PortalCommandContext, type PortalCommandHandler, type PortalMiddleware } from './portal-context.js'
import { decodeEntry, encodeReply, EntryKind, type CommandBody, type CommandReply, type PortalEntry } from './stream-format.js'
import { sendBuffer, type RawEntry } from './stream-reader.js'

interface Registered {
  readonly name: string
  readonly key: string
  readonly handler: PortalCommandHandler
  readonly middleware: readonly PortalMiddleware[]
  /** Entries of this stream running now: the stream is not read again while a batch's worth runs. */
  running: number
}

/** What the runner needs from its portal. */
export interface CommandParts {
  redis: RedisConnection
  keys: Keys
  group: string
  consumer: string
  batchSize: number
  logger: Logger
  contextOf(entry: PortalEntry): PortalCommandContext
  /** Counts one outcome in the portal's stats. */
  count(outcome: 'handled' | 'failed' | 'malformed' | 'expired'): void
  /** A stream may be read again. */
  readable(): void
}

/**
 * The portal's commands: each has a stream per group, read by the group's consumer
 * group. Entries run concurrently (they are request/response, not ordered); each
 * gets its reply published on the owning instance's reply topic, then is
 * acknowledged. An entry past its deadline is acknowledged without running: its
 * caller has already been told `TIMEOUT`.
 */
export class CommandRunner {
  private readonly commands = new Map<string, Registered>()
  private readonly byKey = new Map<string, Registered>()
  private readonly running = new Set<Promise<void>>()

  constructor(private readonly parts: CommandParts) {}

  add(name: string, handler: PortalCommandHandler, middleware: readonly PortalMiddleware[]): string {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('A command name must be a non-empty string')
    if (typeof handler !== 'function') throw new TypeError(`The handler of command "${name}" must be a function`)
    if (!Array.isArray(middleware) || middleware.some((step) => typeof step !== 'function')) throw new TypeError(`The middleware of command "${name}" must be an array of functions`)
    // A server never forwards its built-in commands, so a portal could not be reached by one.
    if (name.startsWith(RESERVED_PREFIX)) throw new RangeError(`Command names starting with "${RESERVED_PREFIX}" are reserved for meshkit`)
    if (this.commands.has(name)) throw new RangeError(`Command "${name}" is already registered`)
    const key = this.parts.keys.portalCommands(this.parts.group, name)
    const registered: Registered = { name, key, handler, middleware: [...middleware], running: 0 }
    this.commands.set(name, registered)
    this.byKey.set(key, registered)
    return key
  }

  remove(name: string): void {
    const registered = this.commands.get(name)
    if (!registered) return
    this.commands.delete(name)
    this.byKey.delete(registered.key)
  }

  get names(): string[] {
    return [...this.commands.keys()]
  }

  get keys(): string[] {
    return [...this.byKey.keys()]
  }

  /** Command streams the reader may read now. */
  readableKeys(): string[] {
    return [...this.byKey.values()].filter((command) => command.running < this.parts.batchSize).map((command) => command.key)
  }

  /** Resolves when no command runs. */
  async whenIdle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running)
  }

  deliver(key: string, entries: RawEntry[]): void {
    const registered = this.byKey.get(key)
    for (const [id, fields] of entries) {
      if (registered) registered.running++
      const run = this.runOne(key, registered, id, fields).finally(() => {
        this.running.delete(run)
        if (registered) registered.running--
        this.parts.readable()
      })
      this.running.add(run)
    }
  }

  /**
   * Takes over the command entries pending with consumers that are not live portals
   * (a portal that died mid-command): its callers may still be waiting.
   */
  async claimDead(live: ReadonlySet<string>): Promise<void> {
    const { redis, group, consumer, batchSize } = this.parts
    for (const key of this.keys) {
      const summary = (await redis.xpending(key, group)) as [number, string | null, string | null, Array<[string, string]> | null]
      for (const [owner] of summary[3] ?? []) {
        if (owner === consumer || live.has(owner)) continue
        const pending = (await redis.xpending(key, group, 'IDLE', 0, '-', '+', batchSize, owner)) as Array<[string, string, number, number]>
        if (pending.length === 0) continue
        const claimed = (await sendBuffer(redis, 'XCLAIM', [key, group, consumer, 0, ...pending.map(([id]) => id)])) as Array<[Buffer, Buffer[] | null]>
        const entries: RawEntry[] = claimed.filter((entry) => entry !== null).map(([id, fields]) => [id.toString(), fields])
        if (entries.length > 0) this.deliver(key, entries)
      }
    }
  }

  private async runOne(key: string, registered: Registered | undefined, id: string, fields: Buffer[] | null): Promise<void> {
    const entry = decodeEntry(id, fields)
    if (!entry || entry.kind !== EntryKind.COMMAND || !isCommandBody(entry.body)) {
      this.parts.count('malformed')
      this.parts.logger.warn?.('portal skipped a malformed command entry', { key, id })
      await this.acknowledge(key, id)
      return
    }
    const body = entry.body as CommandBody
    if (Date.now() > body.deadline) {
      this.parts.count('expired')
      this.parts.logger.debug?.('portal skipped a command past its deadline', { command: body.name, id })
      await this.acknowledge(key, id)
      return
    }
    const bytes = this.encode(await this.answer(registered, entry, body), body.name)
    try {
      await publishOn(this.parts.redis, this.parts.keys.portalReplies(entry.instanceId), bytes)
    } catch (error) {
      // Not acknowledged: if the portal dies, another takes it over; the caller times out otherwise.
      this.parts.logger.warn?.('portal could not publish a command reply', { command: body.name, error })
      return
    }
    await this.acknowledge(key, id)
  }

  private async answer(registered: Registered | undefined, entry: PortalEntry, body: CommandBody): Promise<CommandReply> {
    if (!registered) return [body.token, 0, ErrorCode.NOT_FOUND, `Command "${body.name}" is not registered on this portal`]
    const ctx = this.parts.contextOf(entry)
    try {
      for (const step of registered.middleware) await step(ctx)
      const result = await registered.handler(ctx)
      this.parts.count('handled')
      return [body.token, 1, result]
    } catch (thrown) {
      if (thrown instanceof MeshError) {
        this.parts.count('handled')
        return thrown.data === undefined ? [body.token, 0, thrown.code, thrown.message] : [body.token, 0, thrown.code, thrown.message, thrown.data]
      }
      // As the server without exposeErrors: what was thrown (SQL, addresses, stacks) stays in this process's log.
      this.parts.count('failed')
      this.parts.logger.error?.('portal command handler failed', { command: body.name, error: thrown })
      return [body.token, 0, ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE]
    }
  }

  /** A result msgpack cannot encode is the handler's bug: the caller gets `INTERNAL_ERROR`, not a timeout. */
  private encode(reply: CommandReply, command: string): Buffer {
    try {
      const bytes = encodeReply(reply)
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    } catch (error) {
      this.parts.logger.error?.('portal could not encode a command reply', { command, error })
      const bytes = encodeReply([reply[0], 0, ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE])
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    }
  }

  private async acknowledge(key: string, id: string): Promise<void> {
    try {
      await this.parts.redis.xack(key, this.parts.group, id)
    } catch (error) {
      // Handled and answered: a holder that claims it later only repeats a reply nobody waits for.
      this.parts.logger.warn?.('portal could not acknowledge a command entry', { key, id, error })
    }
  }
}
