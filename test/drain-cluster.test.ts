import { describe, expect, it } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { CloseCode } from '../src/shared/protocol.js'
import { connectClient, urlOf, waitFor } from './support/harness.js'
import { startInstances } from './support/cluster.js'

const CLIENTS = 100
const WINDOW = 3_000
const BINS = 10

/** A command that takes a little while, as real ones do, and says where it ran. */
function configure(server: MeshServer, name: string): void {
  server.registerCommand('work', async (ctx) => {
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30))
    return { n: ctx.payload as number, by: name }
  })
  server.exposeChannel('feed')
}

/** Arrivals per tenth of the window, as text for the report. */
function histogram(arrivals: readonly number[]): { bins: number[]; text: string } {
  const bins = new Array<number>(BINS).fill(0)
  for (const at of arrivals) bins[Math.min(BINS - 1, Math.floor((at / WINDOW) * BINS))]!++
  const width = WINDOW / BINS
  const text = bins.map((count, i) => `${String(i * width).padStart(5)}–${String((i + 1) * width).padEnd(5)} ms ${String(count).padStart(3)} ${'#'.repeat(count)}`).join('\n')
  return { bins, text }
}

describe('draining one of two instances under load', () => {
  it('fails no accepted command, loses no channel message, and spreads the reconnects over the window', { timeout: 60_000 }, async () => {
    const [a, b] = (await startInstances(2)) as [MeshServer, MeshServer]
    configure(a, 'a')
    configure(b, 'b')
    const clients: MeshClient[] = await Promise.all(Array.from({ length: CLIENTS }, () => connectClient([urlOf(a), urlOf(b)])))
    expect(a.connections.size).toBe(CLIENTS)
    const received = clients.map(() => [] as number[])
    await Promise.all(clients.map((client, i) => client.subscribe<number>('feed', (n) => received[i]!.push(n))))
    const closeCodes: number[] = []
    for (const client of clients) client.on('disconnect', ({ code }) => closeCodes.push(code))

    let stopped = false
    let written = 0
    const writer = (async () => {
      while (!stopped) {
        await b.writeChannel('feed', ++written, 1_000)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })()
    const failures: string[] = []
    const answeredBy = { a: 0, b: 0 }
    const loops = clients.map(async (client) => {
      for (let n = 0; !stopped; n++) {
        try {
          const result = await client.command<{ n: number; by: 'a' | 'b' }>('work', n)
          if (result.n !== n) failures.push(`answer ${result.n} for ${n}`)
          answeredBy[result.by]++
        } catch (error) {
          failures.push((error as { code?: string }).code ?? String(error))
        }
      }
    })
    // Load before the drain: every client has had answers from a.
    await waitFor(() => answeredBy.a >= CLIENTS * 2)

    const arrivals: number[] = []
    const start = performance.now()
    b.onConnection(() => void arrivals.push(performance.now() - start))
    await a.close({ drain: WINDOW })
    const drained = performance.now() - start
    await waitFor(() => b.connections.size === CLIENTS, 10_000)
    // Load after the drain: commands run on the survivor.
    const bBefore = answeredBy.b
    await waitFor(() => answeredBy.b >= bBefore + CLIENTS, 10_000)
    stopped = true
    await Promise.all([writer, ...loops])
    await waitFor(() => received.every((messages) => messages.length >= written), 10_000)

    const { bins, text } = histogram(arrivals)
    console.log(`reconnect arrivals at the survivor, ${CLIENTS} clients, drain ${WINDOW} ms (the drain took ${Math.round(drained)} ms; commands answered by a ${answeredBy.a}, by b ${answeredBy.b}; ${written} channel messages to each client):\n${text}`)
    expect(failures).toEqual([])
    const expected = Array.from({ length: written }, (_, i) => i + 1)
    for (const messages of received) expect(messages).toEqual(expected)
    expect(closeCodes.length).toBe(CLIENTS)
    expect(closeCodes.every((code) => code === CloseCode.SERVICE_RESTART)).toBe(true)
    expect(arrivals.length).toBe(CLIENTS)
    expect(Math.max(...bins)).toBeLessThanOrEqual(CLIENTS / 3)
    expect(drained).toBeLessThan(WINDOW + 1_000)
  })
})
