import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshServer, Portal } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { childPortal, ReportLog } from './support/child-portal.js'
import { connectClient, deferred, eventually, nextEvent, rejectionOf } from './support/harness.js'
import { PORTAL_TTL, startPortal, startPortalServer } from './support/portals.js'

/**
 * A server with portals on, authenticating `{ name }` credentials as that user.
 * Tests start it after their portals: it reads the registry at start and forwards at once.
 */
function commandServer(namespace: string, options: Parameters<typeof startPortalServer>[0] = {}): Promise<MeshServer> {
  return startPortalServer({ namespace, ...options }, (created) => {
    created.onAuthenticate((credentials) => ({ id: (credentials as { name: string }).name, user: { name: (credentials as { name: string }).name } }))
  })
}

describe('commands forwarded to portals', () => {
  it('round-trip: the portal gets the payload and the calling connection, answers it directly, and its result is the reply', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand('echo', async (ctx) => {
        await ctx.connection.send('progress', { halfway: ctx.payload })
        return { payload: ctx.payload, connection: ctx.connection.id, instance: ctx.connection.instanceId, user: ctx.connection.userId, command: ctx.command }
      })
    })
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    await client.authenticate({ name: 'ada' })
    const progress = nextEvent(client, 'progress')
    // The server read the registry before it was ready: the first call is forwarded.
    const reply = await client.command('echo', { n: 1 })
    expect(reply).toEqual({ payload: { n: 1 }, connection: client.id, instance: server.instanceId, user: 'ada', command: 'echo' })
    expect(await progress).toEqual({ halfway: { n: 1 } })
    // Later calls take the same path, each answered with its own result.
    const replies = await Promise.all([2, 3, 4].map((n) => client.command<{ payload: { n: number } }>('echo', { n })))
    expect(replies.map((result) => result.payload.n)).toEqual([2, 3, 4])
  })

  it('keeps a MeshError\'s code and data; any other throw becomes INTERNAL_ERROR without its text', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand('refuse', () => {
        throw new MeshError('QUOTA_EXCEEDED', 'over quota', { data: { limit: 3 } })
      })
      portal.registerCommand('crash', () => {
        throw new Error('password=hunter2')
      })
    })
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    const refused = await rejectionOf(client.command('refuse'))
    expect(refused.code).toBe('QUOTA_EXCEEDED')
    expect(refused.data).toEqual({ limit: 3 })
    const crashed = await rejectionOf(client.command('crash'))
    expect(crashed.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(crashed.message).not.toContain('hunter2')
  })

  it('runs the portal\'s command middleware before its handler', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    let handled = 0
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand(
        'guarded',
        (ctx) => {
          handled++
          return ctx.payload
        },
        [
          (ctx) => {
            if (ctx.payload !== 'ok') throw new MeshError(ErrorCode.FORBIDDEN, 'no')
          },
        ],
      )
    })
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    expect((await rejectionOf(client.command('guarded', 'nope'))).code).toBe(ErrorCode.FORBIDDEN)
    expect(await client.command('guarded', 'ok')).toBe('ok')
    expect(handled).toBe(1)
  })

  it('runs the server\'s global middleware and authentication gating first: a refused call never reaches the portal', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const calls: unknown[] = []
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand('count', (ctx) => {
        calls.push([ctx.payload, ctx.connection.userId])
        return calls.length
      })
    })
    const server = await commandServer(namespace, { authentication: { required: true } })
    server.addMiddleware((ctx) => {
      if (ctx.command === 'count' && ctx.payload === 'blocked') throw new MeshError(ErrorCode.FORBIDDEN, 'blocked here')
    })
    const client = await connectClient(server)
    // Unauthenticated: UNAUTHORIZED whether or not the server knows the portal yet.
    expect((await rejectionOf(client.command('count', 'anonymous'))).code).toBe(ErrorCode.UNAUTHORIZED)
    await client.authenticate({ name: 'lin' })
    expect(await client.command('count', 'first')).toBe(1)
    expect((await rejectionOf(client.command('count', 'blocked'))).code).toBe(ErrorCode.FORBIDDEN)
    expect(await client.command('count', 'second')).toBe(2)
    expect(calls).toEqual([
      ['first', 'lin'],
      ['second', 'lin'],
    ])
  })

  it('leaves a command with a local handler to the server', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand('where', () => 'portal')
      portal.registerCommand('fence', () => 'portal')
    })
    const server = await commandServer(namespace)
    server.registerCommand('where', () => 'server')
    const client = await connectClient(server)
    // The portal's other command is forwarded; "where" stays the server's own.
    expect(await client.command('fence')).toBe('portal')
    expect(await client.command('where')).toBe('server')
  })

  it('sends a command two groups registered to the first live group by name, and to the next once that one is gone', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const ran: string[] = []
    const register = (group: string) => (portal: Portal) =>
      void portal.registerCommand('which', () => {
        ran.push(group)
        return group
      })
    await startPortal(namespace, { group: 'beta' }, register('beta'))
    const alpha = await startPortal(namespace, { group: 'alpha' }, register('alpha'))
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    expect(await Promise.all([1, 2, 3].map(() => client.command('which')))).toEqual(['alpha', 'alpha', 'alpha'])
    // One group ran each call: the other never saw them.
    expect(ran).toEqual(['alpha', 'alpha', 'alpha'])
    await alpha.close()
    // Calls the server still sent to alpha fail with UNAVAILABLE; once it has read the registry again, beta answers.
    await eventually(async () => expect(await client.command('which')).toBe('beta'))
  })

  it('answers NOT_FOUND for a name no portal ever registered', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    await startPortal(namespace, {}, (portal) => portal.registerCommand('known', () => true))
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    expect(await client.command('known')).toBe(true)
    expect((await rejectionOf(client.command('unknown'))).code).toBe(ErrorCode.NOT_FOUND)
  })

  it('answers UNAVAILABLE promptly once the only portal with the command has closed, not after the timeout', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const portal = await startPortal(namespace, {}, (created) => created.registerCommand('echo', (ctx) => ctx.payload))
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    expect(await client.command('echo', 1)).toBe(1)
    await portal.close()
    const startedAt = Date.now()
    expect((await rejectionOf(client.command('echo', 2))).code).toBe(ErrorCode.UNAVAILABLE)
    // At most one refresh of the server's view (1 s), against a 30 s command timeout.
    expect(Date.now() - startedAt).toBeLessThan(3_000)
    expect((await rejectionOf(client.command('echo', 3))).code).toBe(ErrorCode.UNAVAILABLE)
  })

  it('answers TIMEOUT when the portal does not reply within portal.commandTimeout', async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const release = deferred()
    await startPortal(namespace, {}, (portal) => {
      portal.registerCommand('stall', async (ctx) => {
        if (ctx.payload === 'stall') await release.promise
        return ctx.payload
      })
    })
    const server = await commandServer(namespace, { portal: { enabled: true, commandTimeout: 500 } })
    const client = await connectClient(server)
    expect(await client.command('stall', 'quick')).toBe('quick')
    const startedAt = Date.now()
    expect((await rejectionOf(client.command('stall', 'stall'))).code).toBe(ErrorCode.TIMEOUT)
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(450)
    release.resolve()
  })

  it('answers UNAVAILABLE within the liveness bound when the only portal with the command is killed, also for a call already waiting', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const ttl = PORTAL_TTL
    const child = await childPortal({ namespace, log: new ReportLog(), ttl, commands: ['echo'] })
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    expect(await client.command<{ portal: string }>('echo', 1)).toEqual({ portal: child.id, payload: 1, connection: client.id })
    const killedAt = Date.now()
    await child.kill()
    // The server still counts the portal live (its announcement has up to ttl left): the call is forwarded and waits.
    expect((await rejectionOf(client.command('echo', 2))).code).toBe(ErrorCode.UNAVAILABLE)
    // The documented bound: ttl + one 1 s refresh, with slack for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(ttl + 1_000 + 2_000)
    const startedAt = Date.now()
    expect((await rejectionOf(client.command('echo', 3))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(1_000)
  })

  it('a call taken by a portal that is then killed is answered by a live portal of its group', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-cmd')
    const ttl = PORTAL_TTL
    const log = new ReportLog()
    // The only portal at first, so it takes the call; it never answers.
    // Both processes load at once; the survivor's portal starts only once the doomed one has the call.
    const [doomed, survivor] = await Promise.all([childPortal({ namespace, log, ttl, commands: ['work'], hold: true }), childPortal({ namespace, log, ttl, commands: ['work'], deferred: true })])
    const server = await commandServer(namespace)
    const client = await connectClient(server)
    const reply = client.command<{ portal: string; payload: unknown }>('work', 'job')
    await log.until((reports) => reports.some((report) => report.kind === 'command'))
    await survivor.start()
    const killedAt = Date.now()
    await doomed.kill()
    expect(await reply).toEqual({ portal: survivor.id, payload: 'job', connection: client.id })
    // The survivor claims commands of consumers that are not live at its heartbeat: ttl + ttl/3, with slack.
    expect(Date.now() - killedAt).toBeLessThan(ttl + ttl / 3 + 1_500)
    const taken = log.reports.filter((report) => report.kind === 'command')
    expect(taken.map((report) => report.portal)).toEqual([doomed.id, survivor.id])
    // The same entry both times: the id a portal would use to drop the repeat.
    expect(taken[0]!.eventId).toBe(taken[1]!.eventId)
  })
})
