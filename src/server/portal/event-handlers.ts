import { isMessageType } from '../../shared/protocol.js'
import type { Logger } from '../logger.js'
import type { PortalContext, PortalHandler } from './portal-context.js'
import { EntryKind } from './stream-format.js'

type EventKind = Exclude<EntryKind, 'command'>

/**
 * A portal's event handlers: per kind, and for messages per type plus `'*'`. Every
 * handler of an entry runs, one after another in the order they were added
 * (typed message handlers before `'*'` ones), and all are awaited before the entry
 * is acknowledged.
 */
export class EventHandlers {
  private readonly byKind = new Map<EventKind, Set<PortalHandler>>()
  private readonly typed = new Map<string, Set<PortalHandler>>()
  private readonly anyMessage = new Set<PortalHandler>()

  constructor(private readonly logger: Logger) {}

  on(kind: EventKind, handler: PortalHandler): () => void {
    if (typeof handler !== 'function') throw new TypeError(`The ${kind} handler must be a function`)
    const set = this.byKind.get(kind) ?? new Set<PortalHandler>()
    this.byKind.set(kind, set)
    return add(set, handler)
  }

  onMessage(type: string, handler: PortalHandler): () => void {
    if (type !== '*' && !isMessageType(type)) throw new TypeError('A message type must be a non-empty string of at most 255 UTF-8 bytes, or "*"')
    if (typeof handler !== 'function') throw new TypeError(`The handler of message "${type}" must be a function`)
    if (type === '*') return add(this.anyMessage, handler)
    const set = this.typed.get(type) ?? new Set<PortalHandler>()
    this.typed.set(type, set)
    const remove = add(set, handler)
    return () => {
      remove()
      if (set.size === 0 && this.typed.get(type) === set) this.typed.delete(type)
    }
  }

  /** Runs every handler of the entry; resolves to whether all of them succeeded. Never rejects. */
  async run(ctx: PortalContext): Promise<boolean> {
    const handlers: PortalHandler[] = []
    if (ctx.kind === EntryKind.MESSAGE) {
      handlers.push(...(this.typed.get(ctx.type!) ?? []), ...this.anyMessage)
    } else {
      handlers.push(...(this.byKind.get(ctx.kind as EventKind) ?? []))
    }
    let ok = true
    for (const handler of handlers) {
      try {
        await handler(ctx)
      } catch (error) {
        ok = false
        this.logger.error?.('portal handler failed', { kind: ctx.kind, type: ctx.type, eventId: ctx.eventId, error })
      }
    }
    return ok
  }
}

/** Adds a wrapper, so that the same function added twice runs twice and each remover removes one. */
function add(set: Set<PortalHandler>, handler: PortalHandler): () => void {
  const entry: PortalHandler = (ctx) => handler(ctx)
  set.add(entry)
  return () => {
    set.delete(entry)
  }
}
