import type { IncomingMessage } from 'node:http'
import { ErrorCode, MeshError, toMeshError } from '../shared/errors.js'
import { BuiltinCommand, CloseCode } from '../shared/protocol.js'
import type { Connection } from './connection.js'
import type { Logger } from './logger.js'
import type { LocalIndex } from './managers/local-index.js'
import type { Redelivery } from './managers/redelivery.js'
import type { MeshStore } from './store/types.js'
import type { OptionKeys } from '../shared/options.js'

export interface AuthenticationOptions {
  /**
   * Milliseconds a connection has to authenticate when authentication is `required`;
   * then it is closed with 4003. Also the time a `commandSync` side channel has to
   * attach (whether or not authentication is required); then it is closed with 4403. @default 10000
   */
  timeout?: number
  /** Unauthenticated connections get no user sends and may run no command but authentication. @default false */
  required?: boolean
  /** `client.authenticate()` resolves with the user object (otherwise with `{}`). @default true */
  sendUserObject?: boolean
  /** Close the connection (4001) after a failed authentication. @default true */
  disconnectOnFail?: boolean
  /** Keep the set of online users (`getConnectedUsers`, `isUserOnline`). @default true */
  storeConnectedUsers?: boolean
}

/** Every `authentication` option, so that a misspelt one throws. */
export const authenticationOptionKeys: OptionKeys<AuthenticationOptions> = {
  timeout: true,
  required: true,
  sendUserObject: true,
  disconnectOnFail: true,
  storeConnectedUsers: true,
}

export const authenticationDefaults = {
  timeout: 10_000,
  required: false,
  sendUserObject: true,
  disconnectOnFail: true,
  storeConnectedUsers: true,
}

export type ResolvedAuthenticationOptions = typeof authenticationDefaults

/** Decides a Mesa-style authentication: the user's id and object, or `null` (or a throw) to refuse. */
export type AuthenticateHandler = (
  credentials: unknown,
  connection: Connection,
) => { id: string | number; user?: unknown } | null | undefined | Promise<{ id: string | number; user?: unknown } | null | undefined>

/** Authenticates the HTTP upgrade: a user object with an `id`, or `null` (or a throw) to refuse with 401 or the thrown `status`. */
export type UpgradeAuthenticator = (request: IncomingMessage) => unknown

/** Commands an unauthenticated connection may run when authentication is required. */
const OPEN_COMMANDS = new Set<string>([BuiltinCommand.AUTHENTICATE])

/**
 * Who a connection is: at the upgrade (`authenticate` option) or afterwards with
 * `client.authenticate()` (Mesa's way). An authenticated connection is indexed
 * under its user in the store, so user-addressed sends reach it on any instance.
 */
export class Authentication {
  private handler: AuthenticateHandler | undefined
  /** Told of every successful `client.authenticate` that identified the connection (the portal seam); not of upgrade authentication. */
  authenticated: ((connection: Connection) => void) | undefined

  constructor(
    private readonly options: ResolvedAuthenticationOptions,
    private readonly upgradeAuthenticator: UpgradeAuthenticator | undefined,
    private readonly store: MeshStore,
    private readonly redelivery: Redelivery,
    private readonly logger: Logger,
    /** The server's `exposeErrors`: whether a handler's thrown text may reach the client. */
    private readonly exposeErrors = false,
    /** This instance's authenticated connections by user (and the user topics it listens on). */
    private readonly users?: LocalIndex,
  ) {}

  get required(): boolean {
    return this.options.required
  }

  get tracksOnlineUsers(): boolean {
    return this.options.storeConnectedUsers
  }

  onAuthenticate(handler: AuthenticateHandler): void {
    if (typeof handler !== 'function') throw new TypeError('onAuthenticate needs a function')
    this.handler = handler
  }

  /** Runs the upgrade authenticator: the user to attach, or the HTTP status to refuse with. */
  async atUpgrade(request: IncomingMessage): Promise<{ user?: { id: string; value: unknown }; status?: number }> {
    if (!this.upgradeAuthenticator) return {}
    try {
      const user = await this.upgradeAuthenticator(request)
      if (user === null || user === undefined) return { status: 401 }
      const id = idOf((user as { id?: unknown }).id)
      if (id === undefined) {
        this.logger.error?.('authenticate() must return a user with a string or number id')
        return { status: 500 }
      }
      return { user: { id, value: user } }
    } catch (error) {
      // A store that is away is no refusal: a 401 would make reconnecting clients give up for good.
      if (error instanceof MeshError && error.code === ErrorCode.UNAVAILABLE) return { status: 503 }
      const status = (error as { status?: unknown; statusCode?: unknown } | undefined)?.status ?? (error as { statusCode?: unknown } | undefined)?.statusCode
      if (typeof status === 'number' && status >= 400 && status < 600) return { status }
      // No status: a fault rather than a decision (a session store down, a bug). Its client
      // only sees 401, and stops reconnecting on it, so the server's log must say why.
      this.logger.warn?.('authenticate threw; upgrade refused (401)', { error })
      return { status: 401 }
    }
  }

  /** A new connection: identify it if the upgrade did, else start the clock when authentication is required. */
  async accepted(connection: Connection, upgradeUser: { id: string; value: unknown } | undefined): Promise<void> {
    if (upgradeUser) {
      // The upgrade already proved who this is: the connection is that user even if
      // the store is away now (its index is written back when the store returns).
      connection.identify(upgradeUser.id, upgradeUser.value)
      await this.identify(connection, upgradeUser.id, upgradeUser.value).catch((error: unknown) => {
        // A socket that closed meanwhile has nothing left to record.
        if (!(error instanceof MeshError && error.code === ErrorCode.CONNECTION_CLOSED)) throw error
      })
      return
    }
    if (this.options.required) {
      connection.authTimer = setTimeout(() => {
        if (!connection.isAuthenticated) connection.close(CloseCode.AUTH_TIMEOUT, 'authentication timeout')
      }, this.options.timeout)
    }
  }

  /** `UNAUTHORIZED` for commands of an unauthenticated connection when authentication is required. */
  gate(connection: Connection, command: string): MeshError | undefined {
    if (!this.options.required || connection.isAuthenticated || OPEN_COMMANDS.has(command)) return undefined
    return new MeshError(ErrorCode.UNAUTHORIZED, 'Authenticate first')
  }

  /**
   * The `mesh/authenticate` command: resolves with what the client receives. One
   * attempt at a time per connection: another one while it runs is refused with
   * `AUTH_IN_PROGRESS` without reaching the handler (pipelined guesses cannot
   * outrun the 4001 close), and after a failure that closes the connection none is.
   */
  async authenticate(connection: Connection, credentials: unknown): Promise<unknown> {
    if (connection.authRefused) throw new MeshError(ErrorCode.UNAUTHORIZED, 'Authentication failed; the connection is closing')
    if (connection.authenticating) throw new MeshError(ErrorCode.AUTH_IN_PROGRESS, 'Another authentication of this connection is running')
    connection.authenticating = true
    try {
      return await this.decide(connection, credentials)
    } finally {
      connection.authenticating = false
    }
  }

  private async decide(connection: Connection, credentials: unknown): Promise<unknown> {
    let result: Awaited<ReturnType<AuthenticateHandler>>
    try {
      if (!this.handler) throw new MeshError(ErrorCode.UNAUTHORIZED, 'This server does not authenticate with credentials')
      result = await this.handler(credentials, connection)
    } catch (error) {
      // An application's MeshError keeps its code; any other throw is a refusal, whose
      // text (a failed lookup's SQL, an address) stays in the log unless exposeErrors.
      if (!(error instanceof MeshError)) this.logger.warn?.('onAuthenticate threw; refused', { connectionId: connection.id, error })
      // The check could not run (a store away): no refusal, so no 4001 and no spent try; the client retries.
      if (error instanceof MeshError && error.code === ErrorCode.UNAVAILABLE) throw error
      const refusal = error instanceof MeshError
        ? error
        : new MeshError(ErrorCode.UNAUTHORIZED, this.exposeErrors ? toMeshError(error).message : 'Authentication failed', { cause: error })
      throw this.failed(connection, refusal)
    }
    const id = idOf(result?.id)
    if (!result || id === undefined) throw this.failed(connection, new MeshError(ErrorCode.UNAUTHORIZED, 'Authentication failed'))
    const user = result.user ?? { id: result.id }
    if (connection.isAuthenticated) {
      // One connection, one user: switching would leave the old user marked online through it.
      if (connection.userId !== id) throw anotherUser()
    } else {
      // Another user would share the first one's messages if its write landed after all.
      if (connection.claimedUserId !== undefined && connection.claimedUserId !== id) throw anotherUser()
      try {
        await this.identify(connection, id, user)
      } catch (error) {
        this.forget(connection)
        if (!(error instanceof MeshError && error.code === ErrorCode.CONNECTION_CLOSED)) connection.claimedUserId = id
        throw error
      }
      this.authenticated?.(connection)
    }
    return this.options.sendUserObject ? user : {}
  }

  /** Users with at least one connection on any instance. */
  async connectedUsers(): Promise<string[]> {
    this.requireTracking()
    return this.store.getOnlineUsers()
  }

  async isOnline(userId: string): Promise<boolean> {
    this.requireTracking()
    const [connections] = await this.store.getUserConnections([String(userId)])
    return (connections?.length ?? 0) > 0
  }

  /**
   * Indexes the connection under its user. The socket may have closed while the
   * handler ran, and its removal from the store may already be done: the store
   * writes only for a registered connection, so a late write leaves no ghost user.
   * The local identity is set first, so that the instance monitor, writing back a
   * registration that was pending (store outage), sees the user whatever the order.
   */
  private async identify(connection: Connection, id: string, user: unknown): Promise<void> {
    if (connection.isClosed) throw closed()
    connection.identify(id, user)
    // Live sends that find the new registration wait behind the messages kept before it.
    this.redelivery.hold(connection)
    // Indexed as it is identified (a store write that fails at the upgrade keeps both,
    // to be written back later). The SUBSCRIBE to the user's topic runs beside the
    // store write; resolving after both means a send started after this resolved
    // reaches the connection from any instance.
    const listening = this.users?.add(id, connection)
    try {
      // Not written while still open means the registration is pending after an
      // outage; the monitor then writes the user with it.
      await Promise.all([this.store.addUserConnection(id, connection.id, this.options.storeConnectedUsers), listening])
    } catch (error) {
      this.redelivery.release(connection)
      throw error
    }
    if (connection.isClosed) {
      // Gone meanwhile: whatever was written is (or will be) undone by its removal.
      this.redelivery.release(connection)
      this.forget(connection)
      throw closed()
    }
    clearTimeout(connection.authTimer)
    this.redelivery.start(connection)
  }

  /** Undoes a local identification: the identity and the index entry go together. */
  private forget(connection: Connection): void {
    const userId = connection.userId
    if (userId !== undefined) this.users?.remove(userId, connection)
    connection.forget()
  }

  private failed(connection: Connection, error: MeshError): MeshError {
    if (this.options.disconnectOnFail) {
      connection.authRefused = true
      // The close goes out after the error reply, which is written first.
      setImmediate(() => connection.close(CloseCode.AUTH_FAILED, 'authentication failed'))
    }
    return error
  }

  private requireTracking(): void {
    if (!this.options.storeConnectedUsers) {
      throw new MeshError(ErrorCode.NOT_ENABLED, 'Online users are not tracked (authentication.storeConnectedUsers is false)')
    }
  }
}

function anotherUser(): MeshError {
  return new MeshError(ErrorCode.FORBIDDEN, 'This connection is authenticated as another user')
}

function closed(): MeshError {
  return new MeshError(ErrorCode.CONNECTION_CLOSED, 'The connection closed during authentication')
}

function idOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value.length > 0) return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}
