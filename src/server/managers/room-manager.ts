import type { MeshStore } from '../store/types.js'
import { idOf, type ConnectionRef, type Ownership } from './ownership.js'

/** Room membership for connections on any instance. */
export class RoomManager {
  /** The change each connection is undergoing on this instance: the next one waits for it. */
  private readonly changing = new Map<string, Promise<unknown>>()

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
    await this.inTurn(id, async () => {
      const owner = await this.ownership.ownerOf(id)
      await this.ownership.write(id, owner, ['room+', id, room], () => this.store.addToRoom(room, id))
    })
  }

  async removeFromRoom(room: string, connection: ConnectionRef): Promise<void> {
    requireRoom(room)
    const id = idOf(connection)
    await this.inTurn(id, async () => {
      const owner = await this.ownership.ownerOf(id)
      await this.store.removeFromRoom(room, id)
      await this.ownership.record(owner, ['room-', id, room])
    })
  }

  /** Removes a connection from every room it is in; resolves with those rooms. */
  async removeFromAllRooms(connection: ConnectionRef): Promise<string[]> {
    const id = idOf(connection)
    return this.inTurn(id, async () => {
      const owner = await this.ownership.ownerOf(id)
      const rooms = await this.store.removeFromAllRooms(id)
      await this.ownership.record(owner, ['rooms-', id])
      return rooms
    })
  }

  /**
   * Runs one connection's room changes made on this instance one at a time, in the
   * order they were asked for: store write, then the owner's record (and routing).
   * Overlapping, the owner could record them in another order than the store took
   * them (their replies resolve after different numbers of steps), and a leave and a
   * join made back to back would leave the connection a member that gets no
   * broadcasts. Changes made on different instances at once stay unordered.
   */
  private inTurn<T>(connectionId: string, change: () => Promise<T>): Promise<T> {
    const run = (this.changing.get(connectionId) ?? Promise.resolve()).then(change)
    const settled = run.catch(() => {})
    this.changing.set(connectionId, settled)
    void settled.then(() => {
      if (this.changing.get(connectionId) === settled) this.changing.delete(connectionId)
    })
    return run
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
