import { describe, expect, it } from 'vitest'
import { ChannelWriteBatches, type ChannelWrite, type ChannelWriteSteps } from '../src/server/store/channel-write-batches.js'
import { deferred, type Deferred } from './support/harness.js'

/**
 * The batching itself, on steps that record their calls and answer when the test says:
 * what the store contract cannot see (it checks offsets, history and order, which
 * unbatched writes give too), namely how many calls reach the store.
 */
function recordingSteps(): { steps: ChannelWriteSteps; calls: Array<{ channel: string; writes: ChannelWrite[]; answer: Deferred<number> }> } {
  const calls: Array<{ channel: string; writes: ChannelWrite[]; answer: Deferred<number> }> = []
  const record = (channel: string, writes: ChannelWrite[]): Promise<number> => {
    const answer = deferred<number>()
    calls.push({ channel, writes, answer })
    return answer.promise
  }
  return {
    calls,
    steps: {
      one: (channel, message, historyLimit) => record(channel, [{ message: Buffer.from(message), historyLimit }]),
      batch: (channel, writes) => record(channel, [...writes]),
    },
  }
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('ChannelWriteBatches', () => {
  it('sends a write to an idle channel at once, and the writes made meanwhile as one batch with the next offsets', async () => {
    const { steps, calls } = recordingSteps()
    const batches = new ChannelWriteBatches(steps)
    const first = batches.write('news', bytes('m0'), 10)
    expect(calls).toHaveLength(1)
    const rest = Array.from({ length: 9 }, (_, n) => batches.write('news', bytes(`m${n + 1}`), 10))
    const other = batches.write('sport', bytes('s0'), 10)
    // The other channel does not wait for this one.
    expect(calls.map(({ channel, writes }) => [channel, writes.length])).toEqual([['news', 1], ['sport', 1]])
    calls[0]!.answer.resolve(41)
    expect(await first).toBe(41)
    await new Promise((resolve) => setImmediate(resolve))
    expect(calls).toHaveLength(3)
    expect(calls[2]!.writes.map(({ message }) => message.toString())).toEqual(rest.map((_, n) => `m${n + 1}`))
    calls[2]!.answer.resolve(50)
    expect(await Promise.all(rest)).toEqual([42, 43, 44, 45, 46, 47, 48, 49, 50])
    calls[1]!.answer.resolve(7)
    expect(await other).toBe(7)
  })

  it('bounds a batch by messages and bytes, leaving the rest for the next', async () => {
    const { steps, calls } = recordingSteps()
    const batches = new ChannelWriteBatches(steps, { maxMessages: 4, maxBytes: 10 })
    void batches.write('c', bytes('x'), 1)
    const waiting = [bytes('aaaa'), bytes('bbbb'), bytes('cccc'), bytes('d')].map((message) => batches.write('c', message, 1))
    calls[0]!.answer.resolve(1)
    await new Promise((resolve) => setImmediate(resolve))
    // 4 + 4 bytes fit in 10, the third would not.
    expect(calls[1]!.writes.map(({ message }) => message.toString())).toEqual(['aaaa', 'bbbb'])
    calls[1]!.answer.resolve(3)
    await new Promise((resolve) => setImmediate(resolve))
    expect(calls[2]!.writes.map(({ message }) => message.toString())).toEqual(['cccc', 'd'])
    calls[2]!.answer.resolve(5)
    expect(await Promise.all(waiting)).toEqual([2, 3, 4, 5])
  })
})
