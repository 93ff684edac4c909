import { once, type EventEmitter } from 'node:events'
import { onTestFinished } from 'vitest'
import Mesa, { Client, type ClientOptions, type MesaOptions } from 'meshkit/mesa'

/** A Mesa facade on a free port (the facade's default is 4000), closed when the test ends. */
export async function startMesa(options: MesaOptions = {}): Promise<Mesa> {
  const mesa = new Mesa({ port: 0, ...options })
  onTestFinished(() => mesa.close())
  await mesa.ready()
  return mesa
}

export function mesaUrl(mesa: Mesa, path = ''): string {
  return `ws://127.0.0.1:${mesa.port}${path}`
}

/** A facade client, connected (its `connected` event seen), closed when the test ends. */
export async function mesaClient(mesa: Mesa, options: ClientOptions = {}, path = ''): Promise<Client> {
  const client = new Client(mesaUrl(mesa, path), { autoConnect: false, ...options })
  onTestFinished(() => client.disconnect())
  await client.connect()
  return client
}

/** The arguments of an emitter's next event, failing after `timeout` ms. */
export async function nextOf<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, timeout = 5_000): Promise<T> {
  return (await once(emitter, event, { signal: AbortSignal.timeout(timeout) })) as T
}

/**
 * Every `message` an emitter gives, from now on, in order; `next(type)` waits for
 * the first not yet taken of that type (nothing is missed between awaits).
 */
export class Inbox {
  readonly all: { data: unknown; type: string }[] = []
  private readonly waiters = new Set<() => void>()

  constructor(emitter: EventEmitter, event = 'message') {
    emitter.on(event, (message: { data: unknown; type: string }) => {
      this.all.push(message)
      for (const wake of this.waiters) wake()
    })
  }

  types(): string[] {
    return this.all.map((message) => message.type)
  }

  async next(type: string, timeout = 5_000): Promise<{ data: unknown; type: string }> {
    const deadline = Date.now() + timeout
    for (;;) {
      const index = this.all.findIndex((message) => message.type === type)
      if (index >= 0) return this.all.splice(index, 1)[0]!
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new Error(`no ${type} message within ${timeout} ms`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, remaining)
        const waiters = this.waiters
        function done(): void {
          clearTimeout(timer)
          waiters.delete(done)
          resolve()
        }
        waiters.add(done)
      })
    }
  }
}
