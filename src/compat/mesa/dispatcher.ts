import { Dispatcher as MeshDispatcher, type DispatcherOptions } from '../../server/index.js'
import { wireType, type Message } from './message.js'

/**
 * Mesa's Dispatcher on meshkit's: `dispatch(message, recipients, excluding)` sends to
 * authenticated users on every instance, with the same options (`namespace`, `sync`).
 */
export class Dispatcher {
  /** The meshkit dispatcher doing the work. */
  readonly mesh: MeshDispatcher
  private readonly syncEnabled: boolean

  constructor(redis: ConstructorParameters<typeof MeshDispatcher>[0], options: DispatcherOptions = {}) {
    this.mesh = new MeshDispatcher(redis, options)
    this.syncEnabled = options.sync?.enabled === true
  }

  /**
   * Sends to every connection of these users; `['*']` (the default) is everyone, and
   * `excluding` applies to it too (Mesa ignored exclusions there). Resolves once the
   * message is handed to Redis.
   */
  dispatch(message: Message<unknown>, recipients: readonly (string | number)[] = ['*'], excluding: readonly (string | number)[] = []): Promise<void> {
    const type = wireType(message)
    if (!message.options.sync && this.syncEnabled) throw new TypeError('Message option sync: false is not supported by dispatch on meshkit (see docs/migrating.md)')
    return this.mesh.dispatch(type, message.data, recipients, excluding)
  }

  close(): Promise<void> {
    return this.mesh.close()
  }
}
