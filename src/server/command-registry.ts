import { ErrorCode, MeshError, toClientError } from '../shared/errors.js'
import { invalidPayload, type ApiSchemas, type PayloadCheck, type Verdict } from './api-schemas.js'
import { isThenable, runChain } from './compose.js'
import type { Connection } from './connection.js'
import { RequestContext, type CommandHandler, type MeshContext, type Middleware } from './context.js'
import { silentLogger, type Logger } from './logger.js'
import type { MeshServer } from './mesh-server.js'
import type { Replies } from './sync-channels.js'
import { noInstruments, type Instruments } from './instruments.js'

/** How handler failures are reported: the server's `exposeErrors` option and logger. */
export interface FailureReporting {
  exposeErrors: boolean
  logger: Logger
  /** Told of every fault that is logged (the `onError` hooks). */
  onFault?: (error: unknown, connection: Connection, command: string) => void
}

/** Command names under this prefix belong to meshkit's built-in commands. */
export const RESERVED_PREFIX = 'mesh/'

interface Command {
  readonly handler: CommandHandler
  readonly own: readonly Middleware[]
  /** The payload's schema (`api` option), looked up once, here, so that a request pays no lookup. */
  readonly check: PayloadCheck | undefined
  /** Global middleware followed by the command's own, rebuilt when either changes. */
  chain: readonly Middleware[]
}

/** Commands answered elsewhere (portals): asked only for names with no local handler. */
export interface RemoteCommands {
  /** Whether calls of this name are the remote side's: then the global middleware runs, then `call`. */
  knows(name: string): boolean
  /** While the remote side is taking in an announced change (a new command), the promise of that. */
  changing(): Promise<void> | undefined
  call: CommandHandler
}

/** Commands, their middleware, and running one request through them. */
export class CommandRegistry {
  // A Map, not an object: names such as `__proto__` or `toString` must be unknown commands.
  private readonly commands = new Map<string, Command>()
  private readonly global: Middleware[] = []
  /** Where names with no local handler go (portals); absent, they are `NOT_FOUND` at once. */
  remote: RemoteCommands | undefined
  /** Told of every answer (command, outcome, duration); set by the server when metrics are on. */
  instruments: Instruments = noInstruments

  constructor(
    private readonly server: MeshServer,
    private readonly maxPendingRequests: number,
    /** Refuses a request before anything else runs (authentication required, say). */
    private readonly gate: (connection: Connection, name: string) => MeshError | undefined = () => undefined,
    private readonly failures: FailureReporting = { exposeErrors: false, logger: silentLogger },
    /** The `api` option's schemas; absent when it has none. */
    private readonly schemas?: ApiSchemas,
  ) {}

  /** `P`: the payload shape a handler checks for (built-in commands read client input defensively, as `unknown` fields). */
  register<P = unknown>(name: string, handler: CommandHandler<P>, middleware: readonly Middleware[] = [], internal = false): void {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('A command name must be a non-empty string')
    if (typeof handler !== 'function') throw new TypeError(`The handler of command "${name}" must be a function`)
    if (!internal && name.startsWith(RESERVED_PREFIX)) {
      throw new RangeError(`Command names starting with "${RESERVED_PREFIX}" are reserved for meshkit`)
    }
    if (this.commands.has(name)) throw new RangeError(`Command "${name}" is already registered`)
    for (const step of middleware) requireFunction(step)
    const own = [...middleware]
    // Built-in commands check their own payloads: a `*` pattern of the application's must not reach them.
    const check = internal ? undefined : this.schemas?.command(name)
    this.commands.set(name, { handler: handler as CommandHandler, own, check, chain: [...this.global, ...own] })
  }

  has(name: string): boolean {
    return this.commands.has(name)
  }

  /** The global middleware, which client messages run through too. */
  get globalMiddleware(): readonly Middleware[] {
    return this.global
  }

  addMiddleware(middleware: readonly Middleware[]): void {
    for (const step of middleware) requireFunction(step)
    this.global.push(...middleware)
    for (const command of this.commands.values()) command.chain = [...this.global, ...command.own]
  }

  /**
   * Handles one request of `connection` and answers it on `out` (the connection's own
   * socket, or its side channel for `commandSync`); never throws.
   */
  dispatch(connection: Connection, requestId: number, name: string, payload: unknown, out: Replies = connection, started = this.instruments.now()): void {
    const refusal = this.gate(connection, name)
    if (refusal) {
      this.refuse(out, requestId, name, refusal, started)
      return
    }
    const command = this.commands.get(name)
    if (command) this.run(connection, requestId, name, payload, command.chain, command.handler, out, command.check, started)
    // Only names some portal announced run the middleware: any other stays NOT_FOUND before it, as without portals.
    // Checked here, before forwarding: a portal gets only payloads its API accepts.
    else if (this.remote?.knows(name)) this.run(connection, requestId, name, payload, this.global, this.remote.call, out, this.schemas?.command(name), started)
    else {
      // A portal announced a change that is being read: the name may be what it just registered.
      const changing = this.remote?.changing()
      if (changing) {
        // In flight while it waits: a drain must not close the connection (1012: "not run") and then run it.
        connection.pendingRequests++
        const retry = (): void => {
          this.dispatch(connection, requestId, name, payload, out, started)
          connection.requestDone()
        }
        void changing.then(retry, retry)
      }
      else this.refuse(out, requestId, name, new MeshError(ErrorCode.NOT_FOUND, `Unknown command "${name}"`), started)
    }
  }

  /** Whether calls of this name have a handler, here or on a portal: metrics label only these. */
  knows(name: string): boolean {
    return this.commands.has(name) || this.remote?.knows(name) === true
  }

  private run(
    connection: Connection,
    requestId: number,
    name: string,
    payload: unknown,
    chain: readonly Middleware[],
    handler: CommandHandler,
    out: Replies,
    check: PayloadCheck | undefined,
    started: number,
  ): void {
    if (connection.pendingRequests >= this.maxPendingRequests) {
      this.refuse(out, requestId, name, new MeshError(ErrorCode.TOO_MANY_REQUESTS, `More than ${this.maxPendingRequests} requests in flight`), started)
      return
    }
    if (check === undefined) {
      this.execute(connection, requestId, name, payload, chain, handler, out, started)
      return
    }
    let verdict: Verdict | Promise<Verdict>
    try {
      verdict = check(payload)
    } catch (error) {
      this.refuse(out, requestId, name, this.failed(connection, name, error), started)
      return
    }
    if (!isThenable(verdict)) {
      this.decided(connection, requestId, name, verdict, chain, handler, out, started)
      return
    }
    // An async schema's wait counts as the request in flight that it is.
    connection.pendingRequests++
    // Lowered after the request ran on: a drain closes the connection once nothing is in flight.
    verdict.then(
      (settled) => {
        this.decided(connection, requestId, name, settled, chain, handler, out, started)
        connection.requestDone()
      },
      (error: unknown) => {
        this.refuse(out, requestId, name, this.failed(connection, name, error), started)
        connection.requestDone()
      },
    )
  }

  /** A method, not a closure in `run`: a validated call then allocates no function. */
  private decided(connection: Connection, requestId: number, name: string, verdict: Verdict, chain: readonly Middleware[], handler: CommandHandler, out: Replies, started: number): void {
    if (verdict.valid) this.execute(connection, requestId, name, verdict.value, chain, handler, out, started)
    else this.refuse(out, requestId, name, invalidPayload(verdict.issues), started)
  }

  /** The middleware chain and the handler, on a payload that passed its schema (if any). */
  private execute(connection: Connection, requestId: number, name: string, payload: unknown, chain: readonly Middleware[], handler: CommandHandler, out: Replies, started: number): void {
    const ctx: MeshContext = new RequestContext(name, payload, connection, this.server)
    let result: unknown
    try {
      result = runChain(chain, handler, ctx)
    } catch (error) {
      this.refuse(out, requestId, name, this.failed(connection, name, error), started)
      return
    }
    if (!isThenable(result)) {
      out.respond(requestId, result)
      this.instruments.commandDone(name, 'ok', this.instruments.now() - started)
      return
    }
    connection.pendingRequests++
    result.then(
      (value) => {
        out.respond(requestId, value)
        this.instruments.commandDone(name, 'ok', this.instruments.now() - started)
        connection.requestDone()
      },
      (error: unknown) => {
        this.refuse(out, requestId, name, this.failed(connection, name, error), started)
        connection.requestDone()
      },
    )
  }

  private refuse(out: Replies, requestId: number, name: string, error: MeshError, started: number): void {
    out.respondError(requestId, error)
    this.instruments.commandDone(name, error.code, this.instruments.now() - started)
  }

  /**
   * The error the client gets for a throw in the chain. A throw that is not a
   * `MeshError` is a bug or a fault (a failed query, an unreachable service): its
   * text may hold SQL or internal addresses, so it goes to the log, with what is
   * needed to find it, and the client gets a generic message unless `exposeErrors`.
   * An `INTERNAL_ERROR` that is already a `MeshError` (a Redis reply error, its text
   * kept in `cause`) is such a fault too: logged, or nobody would ever see its cause.
   */
  private failed(connection: Connection, command: string, thrown: unknown): MeshError {
    const fault = faultIn(thrown)
    if (fault !== undefined) {
      this.failures.logger.error?.('command failed', { command, connectionId: connection.id, error: fault.error })
      this.failures.onFault?.(fault.error, connection, command)
    }
    return toClientError(thrown, this.failures.exposeErrors)
  }
}

/**
 * Whether a throw from middleware or a handler is a fault (a bug, a failed query, a
 * Redis reply error) rather than a `MeshError` refusing on purpose; if so, the error
 * worth logging (an `INTERNAL_ERROR`'s cause, which holds the real text).
 */
export function faultIn(thrown: unknown): { error: unknown } | undefined {
  if (thrown instanceof MeshError && thrown.code !== ErrorCode.INTERNAL_ERROR) return undefined
  return { error: thrown instanceof MeshError && thrown.cause !== undefined ? thrown.cause : thrown }
}

function requireFunction(step: unknown): void {
  if (typeof step !== 'function') throw new TypeError('Middleware must be a function')
}
