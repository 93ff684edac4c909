import type { Connection } from './connection.js'

/**
 * The latest request of each connection for each name (a subscribe, a join) while
 * it is still being decided. A cancel (unsubscribe, leave) or a newer request
 * meanwhile replaces it, and the older one then ends without effect: a guard that
 * answers late cannot put a connection back where its client already left.
 */
export class Attempts {
  private readonly byConnection = new WeakMap<Connection, Map<string, symbol>>()

  /** Starts a request; pass the token to `isCurrent` and `finish`. */
  begin(connection: Connection, name: string): symbol {
    const token = Symbol(name)
    this.of(connection).set(name, token)
    return token
  }

  /** False once the request was cancelled or replaced by a newer one. */
  isCurrent(connection: Connection, name: string, token: symbol): boolean {
    return this.byConnection.get(connection)?.get(name) === token
  }

  /** The request is decided; a newer one, if any, stays. */
  finish(connection: Connection, name: string, token: symbol): void {
    const attempts = this.byConnection.get(connection)
    if (attempts?.get(name) === token) attempts.delete(name)
  }

  /** Whether a request for this name is being decided. */
  pending(connection: Connection, name: string): boolean {
    return this.byConnection.get(connection)?.has(name) ?? false
  }

  /** Cancels the request being decided; true if there was one. */
  cancel(connection: Connection, name: string): boolean {
    return this.byConnection.get(connection)?.delete(name) ?? false
  }

  private of(connection: Connection): Map<string, symbol> {
    let attempts = this.byConnection.get(connection)
    if (!attempts) this.byConnection.set(connection, (attempts = new Map()))
    return attempts
  }
}
