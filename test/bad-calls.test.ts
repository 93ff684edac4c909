import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import { Dispatcher } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, nextEvent, rejectionOf, startServer } from './support/harness.js'

/** Each call rejects with a `BAD_REQUEST` MeshError (never a TypeError an application would not expect). */
async function expectBadRequest(call: () => Promise<unknown>): Promise<void> {
  const error = await rejectionOf(call())
  expect(error).toBeInstanceOf(MeshError)
  expect(error.code).toBe(ErrorCode.BAD_REQUEST)
}

describe('wrong calls to the server', () => {
  it('send without recipients, or with wrong shapes, rejects with BAD_REQUEST', async () => {
    const server = await startServer()
    const untyped = server as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    await expectBadRequest(() => untyped.send!.call(server, 'evt', 'payload'))
    await expectBadRequest(() => untyped.send!.call(server, 'evt', 'payload', 'u1'))
    await expectBadRequest(() => untyped.send!.call(server, 'evt', 'payload', [{ id: 'u1' }]))
    await expectBadRequest(() => untyped.send!.call(server, 'evt', 'payload', ['u1'], 'u2'))
    await expectBadRequest(() => untyped.send!.call(server, 42, 'payload', ['u1']))
  })

  it('sendTo, broadcastExclude, broadcastRoomExclude and room calls reject wrong references with BAD_REQUEST', async () => {
    const server = await startServer()
    const untyped = server as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    await expectBadRequest(() => untyped.sendTo!.call(server, undefined, 'evt'))
    await expectBadRequest(() => untyped.sendTo!.call(server, [42], 'evt'))
    await expectBadRequest(() => untyped.broadcastExclude!.call(server, 'evt', 'x', undefined))
    await expectBadRequest(() => untyped.broadcastRoomExclude!.call(server, 'room', 'evt', 'x', [null]))
    await expectBadRequest(() => untyped.addToRoom!.call(server, 'room', undefined))
    await expectBadRequest(() => untyped.isInRoom!.call(server, 'room', {}))
    await expectBadRequest(() => untyped.broadcast!.call(server, ''))
    await expectBadRequest(() => server.broadcast('disconnect', 'x'))
  })

  it('broadcastRoom to no room (an empty or non-string name) rejects with BAD_REQUEST instead of reaching nobody', async () => {
    const server = await startServer()
    const untyped = server as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    await expectBadRequest(() => server.broadcastRoom('', 'evt'))
    await expectBadRequest(() => untyped.broadcastRoom!.call(server, undefined, 'evt'))
    await expectBadRequest(() => untyped.broadcastRoomExclude!.call(server, 42, 'evt', 'x', []))
  })

  it('a wrong call leaves the server serving', async () => {
    const server = await startServer()
    const client = await connectClient(server)
    await rejectionOf((server as unknown as { send: (e: string, p: unknown) => Promise<void> }).send('evt', 'x'))
    const got = nextEvent(client, 'evt')
    await server.broadcast('evt', 'still here')
    expect(await got).toBe('still here')
  })
})

describe('wrong calls to the Dispatcher', () => {
  it('dispatch without recipients, or with wrong shapes, rejects with BAD_REQUEST', async () => {
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace: uniqueNamespace('bad-calls') })
    onTestFinished(() => dispatcher.close())
    const untyped = dispatcher as unknown as { dispatch: (...args: unknown[]) => Promise<void> }
    await expectBadRequest(() => untyped.dispatch('evt', 'payload'))
    await expectBadRequest(() => untyped.dispatch('evt', 'payload', 'u1'))
    await expectBadRequest(() => untyped.dispatch('evt', 'payload', ['u1'], 7))
    await expectBadRequest(() => untyped.dispatch(undefined, 'payload', ['u1']))
    // A right call still goes through.
    await dispatcher.dispatch('evt', 'payload', ['u1'])
  })
})
