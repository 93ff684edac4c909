import { describe, expect, it } from 'vitest'
import { MemoryStore } from 'meshkit/server'
import { codecByName } from '../src/shared/codec.js'
import type { Connection } from '../src/server/connection.js'
import { Redelivery, resolveSyncOptions } from '../src/server/managers/redelivery.js'
import { waitFor } from './support/harness.js'

/** Just what a redelivery touches of a connection, recording what is written to it. */
function recordingConnection(): { connection: Connection; written: string[] } {
  const written: string[] = []
  const connection = {
    id: 'c1',
    userId: 'u1',
    isOpen: true,
    codec: codecByName('json'),
    maxBufferedBytes: 1 << 20,
    write: (data: string) => written.push(data) > 0,
    // Events go out through writeEvent (it also feeds storeMessages); both record here.
    writeEvent: (data: string) => written.push(data) > 0,
  }
  return { connection: connection as unknown as Connection, written }
}

describe('redelivery of one connection', () => {
  it('asked for again before it ran, runs once, and the held events go out after it, never beside a second run', async () => {
    const redelivery = new Redelivery(new MemoryStore(), resolveSyncOptions({ enabled: true }), {})
    for (const message of ['k1', 'k2', 'k3']) await redelivery.keep('u1', 'msg', message)
    const { connection, written } = recordingConnection()
    redelivery.hold(connection)
    redelivery.start(connection)
    // A write-back after an outage registers the user again while the first run is under way.
    redelivery.start(connection)
    expect(redelivery.holds(connection, 'LIVE')).toBe(true)
    await waitFor(() => written.includes('LIVE'))
    // Asked for again before its read, one run covers both: each kept message once, all before the live one.
    expect(written.at(-1)).toBe('LIVE')
    const kept = written.slice(0, -1).map((frame) => (JSON.parse(frame) as unknown[])[2])
    expect(kept).toEqual(['k1', 'k2', 'k3'])
  })
})
