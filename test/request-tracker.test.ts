import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import { RequestTracker, type PendingRequest } from '../src/client/request-tracker.js'
import { MAX_REQUEST_ID } from '../src/shared/protocol.js'

/** A tracker whose requests are all settled when the test ends, so none rejects unobserved. */
function tracked(lastId?: number, maxId?: number): {
  tracker: RequestTracker
  create(): PendingRequest
  end(): Promise<unknown>
} {
  const tracker = new RequestTracker(lastId, maxId)
  const replies: Promise<unknown>[] = []
  return {
    tracker,
    create() {
      const id = tracker.nextId()
      const request = tracker.add(id, `frame-${id}`, 60_000)
      replies.push(request.reply.catch(() => undefined))
      return request
    },
    end() {
      tracker.rejectAll(new MeshError(ErrorCode.CONNECTION_CLOSED, 'test over'))
      return Promise.all(replies)
    },
  }
}

describe('request ids', () => {
  it('wraps from the largest id back to 1', async () => {
    const t = tracked(MAX_REQUEST_ID - 1)
    expect([t.create().id, t.create().id, t.create().id]).toEqual([MAX_REQUEST_ID, 1, 2])
    await t.end()
  })

  it('skips ids that are still pending when the counter comes round again', async () => {
    const t = tracked(0, 3)
    expect([t.create().id, t.create().id, t.create().id]).toEqual([1, 2, 3])
    t.tracker.resolve(2, 'done')
    // The counter wraps to 1 (pending), skips it, and takes 2, which is free again.
    expect(t.create().id).toBe(2)
    // Every id is pending now: refused, not an endless search.
    expect(() => t.create()).toThrow(expect.objectContaining({ code: ErrorCode.TOO_MANY_REQUESTS }))
    await t.end()
  })

  it('drops a reply for an id that is not pending', async () => {
    const tracker = new RequestTracker()
    const request = tracker.add(tracker.nextId(), 'frame', 20)
    await expect(request.reply).rejects.toMatchObject({ code: ErrorCode.TIMEOUT })
    tracker.resolve(request.id, 'late')
    expect(tracker.size).toBe(0)
    const next = tracker.add(tracker.nextId(), 'frame', 60_000)
    expect(next.id).not.toBe(request.id)
    tracker.resolve(next.id, 'mine')
    expect(await next.reply).toBe('mine')
  })
})

describe('after a 1012 close (requeueSent)', () => {
  it('puts the written requests back ahead of those made since, with their frames, and fails the bound ones', async () => {
    const tracker = new RequestTracker()
    const closed = new MeshError(ErrorCode.CONNECTION_CLOSED, 'gone')
    const first = tracker.add(tracker.nextId(), 'frame-1', 60_000, false, true)
    const bound = tracker.add(tracker.nextId(), 'frame-2', 60_000, true, true)
    const answered = tracker.add(tracker.nextId(), 'frame-3', 60_000, false, true)
    const waiting = tracker.add(tracker.nextId(), 'frame-4', 60_000)
    tracker.resolve(answered.id, 'done')
    tracker.requeueSent(closed)
    await expect(bound.reply).rejects.toMatchObject({ code: ErrorCode.CONNECTION_CLOSED })
    expect(tracker.inFlightCount).toBe(0)
    const order: string[] = []
    for (let next = tracker.nextSendable(); next; next = tracker.nextSendable()) {
      order.push(String(next.frame))
      tracker.markSent(next)
    }
    expect(order).toEqual(['frame-1', 'frame-4'])
    tracker.resolve(first.id, 'again')
    tracker.resolve(waiting.id, 'later')
    expect([await first.reply, await waiting.reply, await answered.reply]).toEqual(['again', 'later', 'done'])
  })
})
