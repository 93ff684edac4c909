import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Portal } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { childInstance } from './support/child-instance.js'
import { connectClient, createClient, nextEvent, rejectionOf, waitFor } from './support/harness.js'
import { portalServer } from './support/hand-portal.js'

/**
 * Portals over the life of servers and portals: servers read the portal registry
 * every second, and at once when a portal says on the registry topic that it joined,
 * changed its commands or left (a command a portal registered is never NOT_FOUND
 * after its `ready()` or `registerCommand`); a portal's user sends with `sync`; the
 * disconnections of an instance that died.
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

describe('an instance that dies', () => {
  it('has its connections\' disconnections written by the survivor that cleans it up (1006, "instance died")', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-dead-instance')
    const instanceTtl = 600
    await portalServer(namespace, { enabled: true, partitions: 2 }, { instanceTtl })
    const doomed = await childInstance({ REDIS_URL: inject('redisUrl'), NAMESPACE: namespace, INSTANCE_TTL: String(instanceTtl), PORTAL: '1' })
    const portal = new Portal(inject('redisUrl'), { namespace, ttl: 1_000 })
    onTestFinished(() => portal.close())
    const events: Array<{ kind: string; connectionId: string; instanceId: string; code?: number; reason?: string }> = []
    portal.onConnection((ctx) => void events.push({ kind: 'connection', connectionId: ctx.connection.id, instanceId: ctx.connection.instanceId }))
    portal.onDisconnection((ctx) => void events.push({ kind: 'disconnection', connectionId: ctx.connection.id, instanceId: ctx.connection.instanceId, code: ctx.code, reason: ctx.reason }))
    await portal.ready()
    const client = createClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    await client.connect()
    const connectionId = client.id!
    await waitFor(() => events.length === 1)
    await doomed.kill()
    await waitFor(() => events.length === 2, 15_000)
    expect(events[0]).toMatchObject({ kind: 'connection', connectionId })
    expect(events[1]).toEqual({ kind: 'disconnection', connectionId, instanceId: events[0]!.instanceId, code: 1006, reason: 'instance died' })
  })
})
