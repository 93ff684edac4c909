import { ErrorCode, MeshError } from '../shared/errors.js'
import type { Connection } from './connection.js'

/** The server options a `ConnectionLimits` enforces. */
export interface ConnectionLimitsOptions {
  maxRoomsPerConnection: number
  maxNameLength: number
}

/** The error every per-connection bound answers with; `data` names the option and its value. */
export function limitExceeded(limit: string, max: number, message: string): MeshError {
  return new MeshError(ErrorCode.LIMIT_EXCEEDED, message, { data: { limit, max } })
}

/**
 * Bounds on what one client may ask of the shared state through the built-in
 * commands: every room and channel name ends up in store keys, and every room a
 * connection is in is work when it closes. Server-side calls are trusted and not
 * bounded here.
 */
export class ConnectionLimits {
  /**
   * Joins admitted but not yet in `connection.rooms`: pipelined joins all pass
   * their check before the first one is recorded, so they are counted here.
   */
  private readonly joining = new WeakMap<Connection, number>()

  constructor(private readonly options: ConnectionLimitsOptions) {}

  /** Throws `LIMIT_EXCEEDED` for a room or channel name longer than `maxNameLength` UTF-8 bytes. */
  requireName(kind: 'room' | 'channel', name: string): void {
    if (!this.fits(name)) {
      const max = this.options.maxNameLength
      throw limitExceeded('maxNameLength', max, `A ${kind} name may have at most ${max} bytes`)
    }
  }

  /** Whether a name is within `maxNameLength` UTF-8 bytes. */
  fits(name: string): boolean {
    const max = this.options.maxNameLength
    // A UTF-16 unit is at least one UTF-8 byte: a long string is refused without encoding it.
    return name.length <= max && Buffer.byteLength(name) <= max
  }

  /**
   * Runs a client's join of a room unless the connection is already in (or
   * joining) `maxRoomsPerConnection` rooms; rejoining a room it is in always passes.
   */
  async join<T>(connection: Connection, room: string, join: () => Promise<T>): Promise<T> {
    const max = this.options.maxRoomsPerConnection
    const joining = this.joining.get(connection) ?? 0
    if (!connection.rooms.has(room) && connection.rooms.size + joining >= max) {
      throw limitExceeded('maxRoomsPerConnection', max, `A connection may be in at most ${max} rooms`)
    }
    this.joining.set(connection, joining + 1)
    try {
      return await join()
    } finally {
      const left = (this.joining.get(connection) ?? 1) - 1
      if (left === 0) this.joining.delete(connection)
      else this.joining.set(connection, left)
    }
  }
}
