import type { MeshError } from '../shared/errors.js'
import { BuiltinCommand } from '../shared/protocol.js'
import type { RetryScope } from './retry-scope.js'

/** How the automatic re-authentication after a reconnect fared. */
export interface ReauthenticateEvent {
  /** True once authenticated again; false while retrying (`retrying: true`) or when refused. */
  authenticated: boolean
  /** The user object the server returned, on success. */
  user?: unknown
  /** Present (true) while a failed re-authentication is being retried; other requests keep waiting. */
  retrying?: true
  /**
   * Why it failed. A refusal is final: the client forgets the credentials (it will not
   * try them again after later reconnects either), and the app may call `authenticate()` anew.
   */
  error?: MeshError
}

/**
 * The credentials of the last successful `authenticate()`, and presenting them
 * again after a reconnect: retried on transient failures (the store is away, the
 * server is busy) until the server answers, told to the application either way.
 */
export class Reauthentication {
  private credentials: { value: unknown } | undefined
  private currentUser: unknown

  constructor(
    private readonly emit: (event: ReauthenticateEvent) => void,
    /** A refusal is also reported as an `error` event, as it was before `reauthenticate` existed. */
    private readonly onRefused: (error: MeshError) => void,
  ) {}

  /** Whether a reconnect has credentials to present. */
  get wanted(): boolean {
    return this.credentials !== undefined
  }

  get user(): unknown {
    return this.currentUser
  }

  remember(credentials: unknown, user: unknown): void {
    this.credentials = { value: credentials }
    this.currentUser = user
  }

  /** The session is over (`close()`): a later `connect()` is anonymous until `authenticate()`. */
  forget(): void {
    this.credentials = undefined
    this.currentUser = undefined
  }

  /** Presents the credentials with `command` until the server answers or the socket (`scope`) is gone. */
  async run(scope: RetryScope, command: (name: string, payload: unknown) => Promise<unknown>): Promise<void> {
    const credentials = this.credentials
    if (!credentials) return
    const outcome = await scope.retry(() => command(BuiltinCommand.AUTHENTICATE, credentials.value), {
      onRetry: (error, attempt) => {
        if (attempt === 1) this.emit({ authenticated: false, retrying: true, error })
      },
    })
    // Abandoned: the socket dropped; the next one presents the credentials again.
    if (outcome.status === 'abandoned') return
    if (outcome.status === 'done') {
      if (this.credentials === credentials) this.currentUser = outcome.value
      this.emit({ authenticated: true, user: outcome.value })
      return
    }
    // Refused: the same credentials after every reconnect would only be refused again.
    if (this.credentials === credentials) this.forget()
    this.emit({ authenticated: false, error: outcome.error })
    this.onRefused(outcome.error)
  }
}
