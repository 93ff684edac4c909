export type Listener<T> = (payload: T) => void

/**
 * A small typed event emitter that works the same in Node and in browsers.
 * `on` returns the function that removes the listener. A listener that throws is
 * reported through `onListenerError` and never stops the others.
 */
export class Emitter<Events extends { [K in keyof Events]: unknown } = Record<string, unknown>> {
  private readonly listeners = new Map<string, Set<Listener<never>>>()

  constructor(private readonly onListenerError: (error: unknown, event: string) => void = rethrowLater) {}

  on<K extends keyof Events & string>(event: K, listener: Listener<Events[K]>): () => void
  on(event: string, listener: Listener<never>): () => void
  on(event: string, listener: Listener<never>): () => void {
    let set = this.listeners.get(event)
    if (!set) this.listeners.set(event, (set = new Set()))
    set.add(listener)
    return () => this.off(event, listener)
  }

  once<K extends keyof Events & string>(event: K, listener: Listener<Events[K]>): () => void
  once(event: string, listener: Listener<never>): () => void
  once(event: string, listener: Listener<never>): () => void {
    const off = this.on(event, (payload: never) => {
      off()
      listener(payload)
    })
    return off
  }

  off(event: string, listener: Listener<never>): void {
    const set = this.listeners.get(event)
    if (!set) return
    set.delete(listener)
    if (set.size === 0) this.listeners.delete(event)
  }

  emit(event: string, payload?: unknown): void {
    const set = this.listeners.get(event)
    if (!set) return
    for (const listener of set) {
      try {
        ;(listener as Listener<unknown>)(payload)
      } catch (error) {
        this.onListenerError(error, event)
      }
    }
  }

  listenerCount(event: string): number {
    return this.listeners.get(event)?.size ?? 0
  }

  removeAllListeners(): void {
    this.listeners.clear()
  }
}

function rethrowLater(error: unknown): void {
  // An application bug in a listener must surface, but not inside our own state
  // transitions, which would otherwise be left half done.
  queueMicrotask(() => {
    throw error
  })
}
