import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Portal } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, nextEvent, rejectionOf } from './support/harness.js'
import { portalServer } from './support/hand-portal.js'

/**
 * Servers read the portal registry every second, and at once when a portal says on
 * the registry topic that it joined, changed its commands or left: a command a
 * portal registered is never NOT_FOUND after its `ready()` or `registerCommand`.
 */
describe('portal registry changes', () => {
  it('forwards a command at once after the portal is ready, and one registered later at once too', async () => {
    const namespace = uniqueNamespace('portal-changes')
    const server = await portalServer(namespace, { enabled: true, partitions: 2 })
    const client = await connectClient(server)
    // Many rounds: with only the periodic read, the first call after ready() would be NOT_FOUND nearly every time.
    for (let round = 0; round < 5; round++) {
      const portal = new Portal(inject('redisUrl'), { namespace, ttl: 3_000 })
      onTestFinished(() => portal.close())
      portal.registerCommand(`first-${round}`, (ctx) => ({ round, payload: ctx.payload }))
      await portal.ready()
      await expect(client.command(`first-${round}`, 'a')).resolves.toEqual({ round, payload: 'a' })
      const unregister = portal.registerCommand(`later-${round}`, () => 'later')
      await expect.poll(() => client.command(`later-${round}`), { timeout: 500 }).toBe('later')
      unregister()
      await portal.close()
      const error = await rejectionOf(client.command(`first-${round}`, undefined, 20_000))
      expect(error.code).toBe(ErrorCode.UNAVAILABLE)
    }
  })
})

describe('a portal dispatching to users', () => {
  it('keeps a message for an offline user with the sync option, redelivered when the user authenticates', async () => {
    const namespace = uniqueNamespace('portal-sync')
    const sync = { enabled: true }
    const server = await portalServer(namespace, { enabled: true, partitions: 2 }, { sync })
    server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
    const portal = new Portal(inject('redisUrl'), { namespace, sync })
    onTestFinished(() => portal.close())
    await portal.ready()
    await portal.dispatch('note', { text: 'while you were away' }, ['ada'])
    const client = await connectClient(server)
    const received = nextEvent(client, 'note')
    await client.authenticate({ user: 'ada' })
    await expect(received).resolves.toEqual({ text: 'while you were away' })
  })

  it('refuses a bad sync option at construction', () => {
    expect(() => new Portal(inject('redisUrl'), { sync: { enabled: true, maxMessages: -1 } })).toThrow(RangeError)
  })
})
