import { RESERVED_EVENTS } from '../shared/protocol.js'

/** Lifecycle names never reach a client's listeners: sending one is a bug worth hearing about at once. */
export function requireEventName(event: string): void {
  if (typeof event !== 'string' || event.length === 0) throw new TypeError('An event name must be a non-empty string')
  if (RESERVED_EVENTS.has(event)) throw new RangeError(`"${event}" is reserved for the client's lifecycle events`)
}
