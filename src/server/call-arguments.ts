import { ErrorCode, MeshError } from '../shared/errors.js'
import { RESERVED_EVENTS } from '../shared/protocol.js'

/**
 * Checks of what the application passes to the server's sending methods and the
 * Dispatcher. A wrong shape (a missing recipient list, a number for an event name)
 * is a `BAD_REQUEST` `MeshError`, so that it rejects the call's promise like any
 * other meshkit failure instead of surfacing as a `TypeError` from deep inside.
 */
export function badArgument(message: string): MeshError {
  return new MeshError(ErrorCode.BAD_REQUEST, message)
}

/** Lifecycle names never reach a client's listeners: sending one is a bug worth hearing about at once. */
export function requireEventName(event: unknown): asserts event is string {
  if (typeof event !== 'string' || event.length === 0) throw badArgument('An event name must be a non-empty string')
  if (RESERVED_EVENTS.has(event)) throw badArgument(`"${event}" is reserved for the client's lifecycle events`)
}

/** A room to send to: a non-empty string (any other name simply has no members). */
export function requireRoomName(room: unknown): asserts room is string {
  if (typeof room !== 'string' || room.length === 0) throw badArgument('A room name must be a non-empty string')
}

/** User ids as strings: a list of strings or numbers (`['*']` for everyone). */
export function userIdList(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw badArgument(`${name} must be an array of user ids`)
  return value.map((id: unknown) => {
    // An id no user has ('' included) is no mistake of shape: it simply reaches nobody.
    if (typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id))) return String(id)
    throw badArgument(`${name} must hold only strings or numbers`)
  })
}

/** Connection ids: a list of strings (unlike user ids, never numbers: the server made them). */
export function connectionIdList(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || !value.every((id) => typeof id === 'string')) throw badArgument(`${name} must be an array of connection ids`)
  return value as string[]
}
