import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Portal } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, rejectionOf } from './support/harness.js'
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
