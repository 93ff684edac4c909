import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { MeshStore } from '../store/types.js'
import { idOf, type ConnectionRef, type Ownership } from './ownership.js'

export interface SetMetadataOptions {
  /** `replace` (default) stores the value as given; `merge` merges an object into the stored object, key by key. */
  strategy?: 'replace' | 'merge'
}

/**
 * Metadata of connections on any instance (Mesh's `connectionManager`). Metadata
 * lives apart from routing data, so setting it never changes where messages go.
 * Values are stored as JSON.
 */
export class ConnectionManager {
  constructor(
    private readonly store: MeshStore,
    private readonly ownership: Ownership,
  ) {}

  /**
   * Sets a connection's metadata; `NOT_FOUND` if no instance holds it, also when it
   * closes while this runs (nothing is then left in the store). `merge` reads, merges and writes: two concurrent
   * merges for the same connection from different instances may lose one's keys.
   */
  async setMetadata(connection: ConnectionRef, metadata: unknown, options: SetMetadataOptions = {}): Promise<void> {
    const id = idOf(connection)
    const owner = await this.ownership.ownerOf(id)
    let value = metadata
    if (options.strategy === 'merge') {
      const [current] = await this.store.getMetadata([id])
      const previous = decode(current)
      if (isPlainObject(previous) && isPlainObject(metadata)) value = { ...previous, ...metadata }
    }
    const encoded = encode(value)
    // The connection may have closed since ownerOf: the write is then refused, not left behind.
    await this.ownership.write(id, owner, ['meta', id, encoded], () => this.store.setMetadata(id, encoded))
  }

  /** A connection's metadata, from any instance; `null` when none was set. */
  async getMetadata(connection: ConnectionRef): Promise<unknown> {
    const [encoded] = await this.store.getMetadata([idOf(connection)])
    return decode(encoded)
  }

  /** Metadata of every connection that has some, as `[{ [connectionId]: metadata }, ...]`. */
  async getAllMetadata(): Promise<Array<Record<string, unknown>>> {
    const all = await this.store.getAllMetadata()
    return [...all].map(([id, encoded]) => ({ [id]: decode(encoded) }))
  }

  /**
   * Metadata of a room's members that have some, as `[{ [connectionId]: metadata }, ...]`.
   * Members without metadata are left out, as `getAllMetadata` leaves them out: the
   * two answers agree, and `getRoomMembers` lists every member.
   */
  async getAllMetadataForRoom(room: string): Promise<Array<Record<string, unknown>>> {
    const members = await this.store.getRoomMembers(room)
    const values = await this.store.getMetadata(members)
    const found: Array<Record<string, unknown>> = []
    members.forEach((id, index) => {
      const encoded = values[index]
      if (encoded !== undefined) found.push({ [id]: decode(encoded) })
    })
    return found
  }
}

function encode(value: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    throw new MeshError(ErrorCode.ENCODE_ERROR, 'Metadata must be JSON-serialisable', { cause: error })
  }
  if (text === undefined) throw new MeshError(ErrorCode.ENCODE_ERROR, 'Metadata must be JSON-serialisable')
  return text
}

function decode(encoded: string | undefined): unknown {
  return encoded === undefined ? null : JSON.parse(encoded)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
