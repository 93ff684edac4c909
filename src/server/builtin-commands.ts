import { ErrorCode, MeshError } from '../shared/errors.js'
import { BuiltinCommand } from '../shared/protocol.js'
import { Attempts } from './attempts.js'
import type { Authentication } from './authentication.js'
import type { CommandRegistry } from './command-registry.js'
import type { ConnectionLimits } from './connection-limits.js'
import type { MeshContext } from './context.js'
import type { Exposure } from './exposure.js'
import type { ChannelManager } from './managers/channel-manager.js'
import type { PresenceManager } from './managers/presence-manager.js'
import type { Redelivery } from './managers/redelivery.js'
import type { RoomManager } from './managers/room-manager.js'

interface SubscribePayload {
  channel?: unknown
  historyLimit?: unknown
  since?: unknown
}

/**
 * The commands the client library uses for channels and self-joined rooms. They
 * pass through global middleware like any command (so authentication middleware
 * can gate them); their names are reserved.
 */
export interface BuiltinParts {
  channels: ChannelManager
  rooms: RoomManager
  roomExposure: Exposure
  authentication: Authentication
  redelivery: Redelivery
  limits: ConnectionLimits
  presence: PresenceManager
}

export function registerBuiltinCommands(
  registry: CommandRegistry,
  { channels, rooms, roomExposure, authentication, redelivery, limits, presence }: BuiltinParts,
): void {
  /** Client joins still deciding: a leave meanwhile cancels them (as an unsubscribe cancels a subscribe). */
  const joins = new Attempts()
  registry.register(BuiltinCommand.AUTHENTICATE, (ctx) => authentication.authenticate(ctx.connection, ctx.payload), [], true)
  registry.register(
    BuiltinCommand.ACK,
    (ctx: MeshContext<{ ids?: unknown } | undefined>) => redelivery.acknowledge(ctx.connection, ctx.payload?.ids),
    [],
    true,
  )
  registry.register(
    BuiltinCommand.SUBSCRIBE,
    (ctx: MeshContext<SubscribePayload | undefined>) => {
      const { channel, historyLimit, since } = ctx.payload ?? {}
      const name = String(channel ?? '')
      limits.requireName('channel', name)
      // Any size is taken here: the channel manager lowers it to maxHistoryLimit.
      const limit = typeof historyLimit === 'number' && historyLimit > 0 ? Math.floor(historyLimit) : 0
      // Offsets are whole numbers: a fractional one would reach Redis's LRANGE as "2.5" and fail there.
      const from = Number.isSafeInteger(since) && (since as number) >= 0 ? (since as number) : undefined
      return channels.subscribe(ctx.connection, name, limit, from)
    },
    [],
    true,
  )
  registry.register(
    BuiltinCommand.UNSUBSCRIBE,
    (ctx: MeshContext<{ channel?: unknown } | undefined>) => {
      const name = String(ctx.payload?.channel ?? '')
      // A name too long to subscribe to cannot be subscribed.
      return limits.fits(name) && channels.unsubscribe(ctx.connection, name)
    },
    [],
    true,
  )
  registry.register(
    BuiltinCommand.JOIN_ROOM,
    async (ctx: MeshContext<{ room?: unknown; presence?: unknown } | undefined>) => {
      const room = String(ctx.payload?.room ?? '')
      if (room.length === 0) return false
      limits.requireName('room', room)
      const state = ctx.payload?.presence
      // Refused before joining: a join that cannot carry its presence does not happen at all.
      if (state !== undefined) {
        presence.requireEnabled(room)
        presence.encode(ctx.connection, state)
      }
      const joined = await join(ctx, room)
      if (joined && state !== undefined) await presence.set(ctx.connection, room, state)
      return joined
    },
    [],
    true,
  )
  /** A join as the client asked for it: exposure and guard, limits, and the race with a leave. */
  const join = async (ctx: MeshContext, room: string): Promise<boolean> => {
    const attempt = joins.begin(ctx.connection, room)
    try {
      return await limits.join(ctx.connection, room, async () => {
        if (!(await roomExposure.allows(ctx.connection, room)) || !joins.isCurrent(ctx.connection, room, attempt)) return false
        await rooms.addToRoom(room, ctx.connection)
        // Left while the store was writing (a newer join instead wants the membership kept):
        // the leave saw no member yet, so undoing it falls to the join.
        if (joins.isCurrent(ctx.connection, room, attempt) || joins.pending(ctx.connection, room)) return true
        await rooms.removeFromRoom(room, ctx.connection)
        return false
      })
    } finally {
      joins.finish(ctx.connection, room, attempt)
    }
  }
  registry.register(
    BuiltinCommand.LEAVE_ROOM,
    async (ctx: MeshContext<{ room?: unknown } | undefined>) => {
      const room = String(ctx.payload?.room ?? '')
      // Only rooms clients may join can be left by clients; a guard that would now refuse does not keep anyone in.
      if (room.length === 0 || !limits.fits(room) || !roomExposure.matches(room)) return false
      // A join still deciding is cancelled: it ends without (or undoes) its membership.
      const cancelled = joins.cancel(ctx.connection, room)
      const member = await rooms.isInRoom(room, ctx.connection)
      if (member) await rooms.removeFromRoom(room, ctx.connection)
      await presence.leave(ctx.connection, room)
      return member || cancelled
    },
    [],
    true,
  )
  registry.register(
    BuiltinCommand.SET_PRESENCE,
    async (ctx: MeshContext<{ room?: unknown; state?: unknown } | undefined>) => {
      await presence.set(ctx.connection, String(ctx.payload?.room ?? ''), ctx.payload?.state)
      return true
    },
    [],
    true,
  )
  registry.register(
    BuiltinCommand.PRESENCE,
    async (ctx: MeshContext<{ room?: unknown } | undefined>) => {
      const room = String(ctx.payload?.room ?? '')
      presence.requireEnabled(room)
      // Members only: the list is the room's business, as its broadcasts are.
      if (!ctx.connection.rooms.has(room)) throw new MeshError(ErrorCode.FORBIDDEN, `Not a member of room "${room}"`)
      return presence.list(room)
    },
    [],
    true,
  )
}
