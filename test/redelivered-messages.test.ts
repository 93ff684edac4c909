import { describe, expect, it } from 'vitest'
import { RedeliveredMessages } from '../src/client/redelivered-messages.js'

describe('redelivered messages on the client', () => {
  it('acknowledges a large burst in batches that fit any maxPayload, each id once', async () => {
    const batches: string[][] = []
    const shown: unknown[] = []
    const messages = new RedeliveredMessages(
      async (ids) => void batches.push(ids),
      (_event, payload) => shown.push(payload),
    )
    const ids = Array.from({ length: 2_500 }, (_, i) => `1-${i}`)
    for (const id of ids) messages.receive('m', id, id)
    messages.flush()
    expect(batches.map((batch) => batch.length)).toEqual([1_000, 1_000, 500])
    expect(batches.flat()).toEqual(ids)
    expect(shown).toEqual(ids)
  })

  it('shows a repeat once, and forgets what it saw when reset for a new session', async () => {
    const shown: unknown[] = []
    const messages = new RedeliveredMessages(async () => {}, (_event, payload) => shown.push(payload))
    messages.receive('m', 'a', '1-0')
    messages.receive('m', 'a again', '1-0')
    expect(shown).toEqual(['a'])
    messages.reset()
    messages.receive('m', 'another user', '1-0')
    expect(shown).toEqual(['a', 'another user'])
  })
})
