import { describe, expect, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Keys } from '../src/server/store/keys.js'
import { encodeReply, type CommandBody } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, recordingLogger, rejectionOf, waitFor } from './support/harness.js'
import { announce, answerCalls, portalServer, redisClient } from './support/hand-portal.js'

/** Commands no local handler owns, forwarded by the server to portals (played by hand on the real Redis). */
describe('commands forwarded to portals', () => {
  it('forwards a command to the first live group that has it and answers with the reply or its error', async () => {
    const namespace = uniqueNamespace('portal-rpc')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p-zeta', 'zeta', ['sum'])
    await announce(redis, keys, 'p-alpha', 'alpha', ['sum', 'other'])
    const seen = await answerCalls(keys, 'alpha', 'sum', (body) => {
      const { a, b } = body.payload as { a: number; b: number }
      return b < 0 ? [0, 'NEGATIVE', 'no negatives', { b }] : [1, a + b]
    })
    const server = await portalServer(namespace, { enabled: true }, { authenticate: () => ({ id: 'u1' }) })
    const client = await connectClient(server)
    expect(await client.command('sum', { a: 2, b: 3 })).toBe(5)
    const error = await rejectionOf(client.command('sum', { a: 2, b: -1 }))
    expect(error.code).toBe('NEGATIVE')
    expect(error.data).toEqual({ b: -1 })
    expect(seen).toHaveLength(2)
    expect(seen[0]).toMatchObject({ kind: 'command', connectionId: client.id, instanceId: server.instanceId })
    expect(seen[0]!.body).toMatchObject({ name: 'sum', payload: { a: 2, b: 3 }, userId: 'u1' })
    expect((seen[0]!.body as CommandBody).deadline).toBeGreaterThan(Date.now())
    expect(await redis.xlen(keys.portalCommands('zeta', 'sum'))).toBe(0)
  })

  it('answers UNAVAILABLE at once when only an expired portal announced the command, NOT_FOUND when none did', async () => {
    const namespace = uniqueNamespace('portal-unavailable')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p-dead', 'g', ['report'], -1_000)
    const server = await portalServer(namespace, { enabled: true })
    const ran: string[] = []
    server.addMiddleware((ctx) => void ran.push(ctx.command))
    const client = await connectClient(server)
    const startedAt = Date.now()
    const error = await rejectionOf(client.command('report'))
    expect(error.code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(1_000)
    expect((await rejectionOf(client.command('never-announced'))).code).toBe(ErrorCode.NOT_FOUND)
    // Global middleware runs for a portal's command, not for a name nobody has.
    expect(ran).toEqual(['report'])
    expect(await redis.xlen(keys.portalCommands('g', 'report'))).toBe(0)
  })

  it('fails a waiting call with UNAVAILABLE when its group loses its last live portal, long before the timeout', async () => {
    const namespace = uniqueNamespace('portal-lost')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p1', 'g', ['slow'])
    const seen = await answerCalls(keys, 'g', 'slow', () => undefined)
    const server = await portalServer(namespace, { enabled: true })
    const client = await connectClient(server)
    const call = client.command('slow', null, 20_000)
    await waitFor(() => seen.length === 1)
    const lostAt = Date.now()
    await redis.zadd(keys.portalLiveness, 0, 'p1')
    expect((await rejectionOf(call)).code).toBe(ErrorCode.UNAVAILABLE)
    // Noticed at the next registry read (every second).
    expect(Date.now() - lostAt).toBeLessThan(2_500)
  })

  it('stops waiting for a forwarded call when its connection closes', async () => {
    const namespace = uniqueNamespace('portal-drop')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p1', 'g', ['slow'])
    const seen = await answerCalls(keys, 'g', 'slow', () => undefined)
    const { logger, entries } = recordingLogger()
    const server = await portalServer(namespace, { enabled: true }, { logger })
    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    const client = await connectClient(server)
    const call = client.command('slow')
    call.catch(() => {})
    await waitFor(() => seen.length === 1)
    await client.close()
    await gone.promise
    // The reply arrives after the close: nobody waits for it any more.
    const token = (seen[0]!.body as CommandBody).token
    await redis.publish(keys.portalReplies(server.instanceId), Buffer.from(encodeReply([token, 1, 'late'])))
    await waitFor(() => entries.some((entry) => entry.level === 'debug' && entry.details?.token === token))
  })

  it('answers TIMEOUT when no portal replies within portal.commandTimeout', async () => {
    const namespace = uniqueNamespace('portal-timeout')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p1', 'g', ['slow'])
    const server = await portalServer(namespace, { enabled: true, commandTimeout: 300 })
    const client = await connectClient(server)
    const startedAt = Date.now()
    expect((await rejectionOf(client.command('slow'))).code).toBe(ErrorCode.TIMEOUT)
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(290)
    expect(await redis.xlen(keys.portalCommands('g', 'slow'))).toBe(1)
  })

  it('refuses a forwarded command with UNAUTHORIZED before authentication when it is required, writing nothing', async () => {
    const namespace = uniqueNamespace('portal-auth')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p1', 'g', ['secret'])
    const server = await portalServer(namespace, { enabled: true }, { authentication: { required: true } })
    const client = await connectClient(server)
    expect((await rejectionOf(client.command('secret'))).code).toBe(ErrorCode.UNAUTHORIZED)
    await server.getRoomMembers('fence')
    expect(await redis.xlen(keys.portalCommands('g', 'secret'))).toBe(0)
  })

  it('removes announcements of portals dead for over an hour', async () => {
    const namespace = uniqueNamespace('portal-clean')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'ancient', 'g', ['old'], -3 * 3_600_000)
    await announce(redis, keys, 'recent', 'g', ['new'], -60_000)
    const server = await portalServer(namespace, { enabled: true })
    expect(await redis.zrange(keys.portalLiveness, 0, -1)).toEqual(['recent'])
    expect(await redis.hkeys(keys.portalRegistry)).toEqual(['recent'])
    const client = await connectClient(server)
    expect((await rejectionOf(client.command('old'))).code).toBe(ErrorCode.NOT_FOUND)
    expect((await rejectionOf(client.command('new'))).code).toBe(ErrorCode.UNAVAILABLE)
  })
})

