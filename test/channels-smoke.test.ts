import { describe, expect, it } from 'vitest'
import { startInstances } from './support/cluster.js'
import { connectClient, eventually, startServer } from './support/harness.js'

describe('channels smoke', () => {
  it('memory: history newest first, live after, both codecs', async () => {
    const server = await startServer()
    server.exposeChannel(/^chat:.+$/)
    for (const codec of ['msgpack', 'json'] as const) {
      for (const m of ['m1', 'm2', 'm3', 'm4', 'm5']) await server.writeChannel(`chat:${codec}`, m, 3)
      const client = await connectClient(server, { codec })
      const live: unknown[] = []
      const result = await client.subscribe(`chat:${codec}`, (m) => live.push(m), { historyLimit: 2 })
      expect(result).toEqual({ success: true, history: ['m5', 'm4'] })
      await server.writeChannel(`chat:${codec}`, { n: 6 }, 3)
      await eventually(async () => expect(live).toEqual([{ n: 6 }]))
      expect(await client.subscribe('nope', () => {})).toEqual({ success: false, history: [] })
    }
  })

  it('redis: across instances', async () => {
    const [a, b] = await startInstances(2)
    a!.exposeChannel('news')
    b!.exposeChannel('news')
    const client = await connectClient(b!)
    const live: unknown[] = []
    await a!.writeChannel('news', 'old', 10)
    expect((await client.subscribe('news', (m) => live.push(m), { historyLimit: 5 })).history).toEqual(['old'])
    await a!.writeChannel('news', 'new', 10)
    await eventually(async () => expect(live).toEqual(['new']))
  })
})
