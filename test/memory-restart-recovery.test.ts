import { describe, expect, it } from 'vitest'
import type { RecoveryEvent } from 'meshkit/client'
import { collect } from './support/cluster.js'
import { connectClient, nextEvent, startServer, waitFor } from './support/harness.js'

describe('a client resuming after an in-memory server restarted', () => {
  for (const withHistory of [false, true]) {
    it(`gets one truthful recovery per channel (complete: false), then live messages without another (history ${withHistory ? 'written before the resume' : 'empty'})`, async () => {
      const first = await startServer({}, (server) => server.exposeChannel(/^chat:/))
      const client = await connectClient(first, { reconnectInterval: 20 })
      const live: unknown[] = []
      expect((await client.subscribe('chat:a', (message) => live.push(message))).success).toBe(true)
      await first.writeChannel('chat:a', 'old life', 10)
      await waitFor(() => live.length === 1)
      const recoveries = collect<RecoveryEvent>(client, 'recovery')
      const port = first.port
      await first.close()
      // The new server's store knows nothing of the old offsets; it may have had writes before the client is back.
      const second = await startServer({ port }, (server) => server.exposeChannel(/^chat:/))
      if (withHistory) await second.writeChannel('chat:a', 'new life 1', 10)
      const recovered = nextEvent<RecoveryEvent>(client, 'recovery', 10_000, (event) => event.subscribed)
      await recovered
      await second.writeChannel('chat:a', 'new life 2', 10)
      await waitFor(() => live.includes('new life 2'))
      // The resume said "complete: false" (messages may have been lost); the first live message did not say it again.
      expect(recoveries).toEqual([{ channel: 'chat:a', complete: false, missed: withHistory ? 1 : 0, subscribed: true }])
      expect(live).toEqual(withHistory ? ['old life', 'new life 1', 'new life 2'] : ['old life', 'new life 2'])
    })
  }
})
