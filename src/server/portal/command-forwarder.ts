import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { Connection } from '../connection.js'
import type { MeshContext } from '../context.js'
import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import { redisCall, type RedisConnection } from '../store/redis-client.js'
import type { PortalRegistryView } from './portal-registry-view.js'
import { EntryKind, decodeReply, entryFields } from './stream-format.js'

/** Entries kept per command stream; approximate (`MAXLEN ~`), so that trimming stays cheap. */
const COMMAND_STREAM_LENGTH = '10000'

interface Waiter {
  readonly token: string
  readonly group: string
  readonly command: string
  readonly connection: Connection
  readonly timer: ReturnType<typeof setTimeout>
  resolve(result: unknown): void
  reject(error: MeshError): void
}

/**
 * Commands no local handler owns, forwarded to the portal group that registered
 * them: one entry on the group's command stream, then a wait for the reply the
 * portal publishes on this instance's reply topic. A call ends with the reply, with
 * `TIMEOUT` after `timeout` ms, with `UNAVAILABLE` when its group loses its last live
 * portal for the command, or when its connection closes.
 */
export class CommandForwarder {
  private readonly waiters = new Map<string, Waiter>()
  private readonly byConnection = new Map<Connection, Set<Waiter>>()
  /** Tokens only need to be unique per instance: the reply topic is the instance's own. */
  private nextToken = 0

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: Keys,
    private readonly instanceId: string,
    private readonly view: PortalRegistryView,
    private readonly timeout: number,
    private readonly logger: Logger,
  ) {}

  /** Whether calls of this command are the portals' to answer (or to be refused as `UNAVAILABLE`). */
  knows(command: string): boolean {
    return this.view.isAnnounced(command)
  }

  /** The registry read of a change a portal just announced, while it runs. */
  changing(): Promise<void> | undefined {
    return this.view.changing()
  }

  /** The handler of a forwarded command, run after the global middleware. */
  readonly call = (ctx: MeshContext): Promise<unknown> => {
    const command = ctx.command
    const group = this.view.groupOf(command)
    if (group === undefined) return Promise.reject(unavailable(command))
    const { connection } = ctx
    const token = (this.nextToken++).toString(36)
    const userId = connection.userId
    const body = {
      ...(userId === undefined ? {} : { userId, user: connection.user }),
      name: command,
      payload: ctx.payload,
      token,
      deadline: Date.now() + this.timeout,
    }
    const fields = entryFields(EntryKind.COMMAND, connection.id, this.instanceId, body)
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(token, new MeshError(ErrorCode.TIMEOUT, `No portal answered "${command}" within ${this.timeout} ms`)), this.timeout)
      const waiter: Waiter = { token, group, command, connection, timer, resolve, reject }
      this.waiters.set(token, waiter)
      let own = this.byConnection.get(connection)
      if (!own) this.byConnection.set(connection, (own = new Set()))
      own.add(waiter)
      redisCall(() => this.redis.call('XADD', this.keys.portalCommands(group, command), 'MAXLEN', '~', COMMAND_STREAM_LENGTH, '*', ...fields)).catch((error: unknown) =>
        this.settle(token, error instanceof MeshError ? error : unavailable(command)),
      )
    })
  }

  /** A message on this instance's reply topic. */
  readonly onReply = (bytes: Uint8Array): void => {
    const reply = decodeReply(bytes)
    if (!reply) {
      this.logger.warn?.('ignored a malformed portal reply')
      return
    }
    if (!this.waiters.has(reply[0])) {
      // Timed out, failed over, or its connection closed: nobody waits any more.
      this.logger.debug?.('portal reply for a call nobody waits for', { token: reply[0] })
      return
    }
    if (reply[1] === 1) this.settle(reply[0], undefined, reply[2])
    else this.settle(reply[0], new MeshError(reply[2], reply[3], reply[4] === undefined ? {} : { data: reply[4] }))
  }

  /** After a registry read: calls whose group no longer has a live portal for their command fail at once. */
  readonly recheck = (): void => {
    for (const waiter of this.waiters.values()) {
      if (!this.view.isLive(waiter.group, waiter.command)) this.settle(waiter.token, unavailable(waiter.command))
    }
  }

  /** The connection closed: its calls stop waiting (their replies would have nowhere to go). */
  dropConnection(connection: Connection): void {
    const own = this.byConnection.get(connection)
    if (!own) return
    for (const waiter of own) this.settle(waiter.token, new MeshError(ErrorCode.CONNECTION_CLOSED, 'The connection closed'))
  }

  /** The server closes: every call still waiting fails with `UNAVAILABLE`. */
  close(): void {
    for (const waiter of this.waiters.values()) this.settle(waiter.token, new MeshError(ErrorCode.UNAVAILABLE, 'The server is closing'))
  }

  private settle(token: string, error: MeshError | undefined, result?: unknown): void {
    const waiter = this.waiters.get(token)
    if (!waiter) return
    this.waiters.delete(token)
    clearTimeout(waiter.timer)
    const own = this.byConnection.get(waiter.connection)
    own?.delete(waiter)
    if (own?.size === 0) this.byConnection.delete(waiter.connection)
    if (error) waiter.reject(error)
    else waiter.resolve(result)
  }
}

function unavailable(command: string): MeshError {
  return new MeshError(ErrorCode.UNAVAILABLE, `No live portal handles "${command}"`, { data: { command } })
}
