import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import { PendingRequest, RequestTracker } from '../src/client/request-tracker.js'
import { MeshServer } from 'meshkit/server'
import { connectClient, RawClient, rejectionOf, startServer } from './support/harness.js'

/** A server answering `slow` a millisecond later, recording the order of requests and how many ran at once. */
async function slowServer(maxPendingRequests: number): Promise<{ server: MeshServer; peak: () => number; order: unknown[] }> {
  let running = 0
  let peak = 0
  const order: unknown[] = []
  const server = await startServer({ maxPendingRequests }, (created) =>
    created.registerCommand('slow', async (ctx) => {
      order.push(ctx.payload)
      peak = Math.max(peak, ++running)
      await new Promise((resolve) => setTimeout(resolve, 1))
      running--
      return ctx.payload
    }),
  )
  return { server, peak: () => peak, order }
}

describe('the client keeps within the server\'s maxPendingRequests', () => {
  it('announces the limit in the hello (and leaves it out when there is none)', async () => {
    const limited = await startServer({ maxPendingRequests: 4 })
    expect((await (await RawClient.open(limited)).hello())[3]).toMatchObject({ maxPendingRequests: 4 })
    const unlimited = await startServer({ maxPendingRequests: Infinity })
    expect((await (await RawClient.open(unlimited, 'json')).hello())[3]).not.toHaveProperty('maxPendingRequests')
  })

  it('refuses at construction a limit clients could not pace by', () => {
    expect(() => new MeshServer({ maxPendingRequests: 1.5 })).toThrow(RangeError)
  })

  it('200 commands fired at once against a limit of 4 all succeed, in order, none refused', async () => {
    const { server, peak, order } = await slowServer(4)
    const client = await connectClient(server)
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => client.command('slow', i)))
    const refused = results.filter((result) => result.status === 'rejected')
    expect(refused.map((result) => (result.reason as MeshError).code)).toEqual([])
    expect(results.map((result) => (result as PromiseFulfilledResult<unknown>).value)).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(order).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(peak()).toBe(4)
  })

  it('a request waiting for a slot is still bound by its own timeout', async () => {
    const { server } = await slowServer(1)
    server.registerCommand('never', () => new Promise(() => {}))
    const client = await connectClient(server)
    const stuck = client.command('never', undefined, 60_000).catch((error: MeshError) => error.code)
    // Never sent: the one slot is taken by a request the server never answers.
    expect((await rejectionOf(client.command('slow', 1, 50))).code).toBe(ErrorCode.TIMEOUT)
    await client.close()
    expect(await stuck).toBe(ErrorCode.CONNECTION_CLOSED)
  })
})

describe('RequestTracker in-flight limit', () => {
  it('hands out queued requests in order, only while slots are free; a timed-out request keeps its slot until its late reply', async () => {
    const tracker = new RequestTracker()
    tracker.limit = 2
    const replies: Promise<unknown>[] = []
    const make = (timeout = 60_000): number => {
      const id = tracker.nextId()
      const request = tracker.add(id, `frame-${id}`, timeout)
      replies.push(request.reply.catch((error: MeshError) => error.code))
      return request.id
    }
    const send = (): number[] => {
      const sent: number[] = []
      for (let request = tracker.nextSendable(); request; request = tracker.nextSendable()) {
        tracker.markSent(request)
        if (request instanceof PendingRequest) sent.push(request.id)
      }
      return sent
    }
    const [a, b, c, d] = [make(20), make(), make(), make()]
    expect(send()).toEqual([a, b])
    expect(send()).toEqual([])
    await expect(replies[0]).resolves.toBe(ErrorCode.TIMEOUT)
    // The server still runs `a`: its slot stays taken.
    expect(tracker.inFlightCount).toBe(2)
    expect(send()).toEqual([])
    tracker.resolve(a, 'late')
    expect(send()).toEqual([c])
    tracker.reject(b, new MeshError(ErrorCode.INTERNAL_ERROR, 'boom'))
    expect(send()).toEqual([d])
    // A closed socket frees every slot; bound requests fail with it instead of waiting.
    const bound = tracker.add(tracker.nextId(), 'frame', 60_000, true)
    const boundReply = bound.reply.catch((error: MeshError) => error.code)
    tracker.rejectSent(new MeshError(ErrorCode.CONNECTION_CLOSED, 'gone'))
    expect(await boundReply).toBe(ErrorCode.CONNECTION_CLOSED)
    expect(tracker.inFlightCount).toBe(0)
    expect(await Promise.all(replies)).toEqual([ErrorCode.TIMEOUT, ErrorCode.INTERNAL_ERROR, ErrorCode.CONNECTION_CLOSED, ErrorCode.CONNECTION_CLOSED])
  })
})

