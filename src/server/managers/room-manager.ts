import type { MeshStore } from '../store/types.js'
import { idOf, type ConnectionRef, type Ownership } from './ownership.js'

/** Room membership for connections on any instance. */
export class RoomManager {
  constructor(
    private readonly store: MeshStore,
    private readonly ownership: Ownership,
  ) {}

  /**
   * Adds a connection (of any instance) to a room; `NOT_FOUND` if no instance holds
   * it, also when it closes while this runs (it is then in no room).
   */
  async addToRoom(room: string, connection: ConnectionRef): Promise<void> {
    requireRoom(room)
    const id = idOf(connection)
    const owner = await this.ownership.ownerOf(id)
    await this.ownership.write(id, owner, ['room+', id, room], () => this.store.addToRoom(room, id))
  }

  async removeFromRoom(room: string, connection: ConnectionRef): Promise<void> {
    requireRoom(room)
    const id = idOf(connection)
    const owner = await this.ownership.ownerOf(id)
    await this.store.removeFromRoom(room, id)
    await this.ownership.record(owner, ['room-', id, room])
  }

  /** Removes a connection from every room it is in; resolves with those rooms. */
  async removeFromAllRooms(connection: ConnectionRef): Promise<string[]> {
    const id = idOf(connection)
    const owner = await this.ownership.ownerOf(id)
    const rooms = await this.store.removeFromAllRooms(id)
    await this.ownership.record(owner, ['rooms-', id])
    return rooms
  }

  async isInRoom(room: string, connection: ConnectionRef): Promise<boolean> {
    requireRoom(room)
    return this.store.isInRoom(room, idOf(connection))
  }

  /** Ids of the connections in a room, on every instance. */
  getRoomMembers(room: string): Promise<string[]> {
    requireRoom(room)
    return this.store.getRoomMembers(room)
  }
}

function requireRoom(room: string): void {
  if (typeof room !== 'string' || room.length === 0) throw new TypeError('A room name must be a non-empty string')
}
