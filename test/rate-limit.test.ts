import { describe, expect, it } from 'vitest'
import { CloseCode, ErrorCode, FrameType } from 'meshkit'
import { MeshServer, type Logger, type MeshServerOptions } from 'meshkit/server'
import { RateLimiter, RateVerdict, resolveRateLimit } from '../src/server/rate-limiter.js'
import { connectClient, eventually, nextEvent, RawClient, rejectionOf, startServer } from './support/harness.js'

/** A server whose `work` command counts its runs. */
async function countingServer(options: MeshServerOptions): Promise<{ server: MeshServer; runs: () => number }> {
  let runs = 0
  const server = await startServer(options, (created) => created.registerCommand('work', () => ++runs))
  return { server, runs: () => runs }
}

describe('rateLimit: the bucket', () => {
  it('refills continuously from the clock, refuses within closeAfter, then says close', () => {
    let now = 0
    const limiter = new RateLimiter(resolveRateLimit({ points: 5, duration: 1000, closeAfter: 3 }), () => now)
    const bucket = limiter.bucket()
    const { PASS, REFUSE, CLOSE } = RateVerdict
    const burst = (): RateVerdict[] => Array.from({ length: 9 }, () => limiter.take(bucket))
    expect(burst()).toEqual([PASS, PASS, PASS, PASS, PASS, REFUSE, REFUSE, REFUSE, CLOSE])
    now += 199
    // 0.995 of a token and of a refusal: neither yet.
    expect(limiter.take(bucket)).toBe(CLOSE)
    now += 2
    expect(limiter.take(bucket)).toBe(PASS)
    now += 10_000
    expect(burst()).toEqual([PASS, PASS, PASS, PASS, PASS, REFUSE, REFUSE, REFUSE, CLOSE])
  })
})

describe('rateLimit on a server', () => {
  it('answers requests over the limit with TOO_MANY_REQUESTS without running them, and runs more after the refill', async () => {
    const { server, runs } = await countingServer({ rateLimit: { points: 5, duration: 1000 } })
    let middleware = 0
    server.addMiddleware(() => {
      middleware++
    })
    const client = await connectClient(server)
    const settled = await Promise.allSettled(Array.from({ length: 20 }, () => client.command('work')))
    const refused = settled.filter((result) => result.status === 'rejected')
    expect(settled.filter((result) => result.status === 'fulfilled')).toHaveLength(5)
    expect(refused.map((result) => (result as PromiseRejectedResult).reason.code)).toEqual(Array(15).fill(ErrorCode.TOO_MANY_REQUESTS))
    expect(runs()).toBe(5)
    expect(middleware).toBe(5)
    // One token comes back every 200 ms: a command eventually passes again, on the same connection.
    await eventually(() => client.command('work'), 5_000)
    expect(runs()).toBe(6)
    expect(client.state).toBe('open')
  })

  it('closes a connection that keeps flooding with 4029, logs it, and leaves the other connections alone', async () => {
    const warnings: Array<Record<string, unknown> | undefined> = []
    const logger: Logger = { warn: (_message, details) => warnings.push(details) }
    const { server, runs } = await countingServer({ rateLimit: { points: 5, duration: 1000 }, logger })
    const bystander = await connectClient(server)
    const flooder = await RawClient.open(server)
    await flooder.hello()
    for (let id = 1; id <= 300; id++) flooder.send([FrameType.REQUEST, id, 'work', null])
    expect((await flooder.closed).code).toBe(CloseCode.RATE_LIMITED)
    expect(runs()).toBe(5)
    expect(warnings).toContainEqual(expect.objectContaining({ connectionId: expect.any(String) }))
    expect(await bystander.command('work')).toBe(6)
    expect(bystander.state).toBe('open')
  })

  it('counts pongs as frames', async () => {
    const { server, runs } = await countingServer({ rateLimit: { points: 3, duration: 60_000 } })
    const raw = await RawClient.open(server)
    await raw.hello()
    for (let seq = 1; seq <= 3; seq++) raw.send([FrameType.PONG, seq])
    raw.send([FrameType.REQUEST, 1, 'work', null])
    const reply = await raw.nextOfType(FrameType.ERROR)
    expect(reply.slice(0, 3)).toEqual([FrameType.ERROR, 1, ErrorCode.TOO_MANY_REQUESTS])
    expect(reply[4]).toEqual({ limit: 'rateLimit' })
    expect(runs()).toBe(0)
  })

  it('makes the TS client reconnect after a 4029 close', async () => {
    const { server } = await countingServer({ rateLimit: { points: 2, duration: 60_000, closeAfter: 0 } })
    const client = await connectClient(server, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const disconnected = nextEvent<{ code: number }>(client, 'disconnect')
    const reconnected = nextEvent(client, 'reconnect')
    const settled = await Promise.allSettled([client.command('work'), client.command('work'), client.command('work')])
    expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected'])
    expect((await disconnected).code).toBe(CloseCode.RATE_LIMITED)
    await reconnected
    // A new connection, a new bucket.
    expect(await client.command('work')).toBe(3)
  })

  it('is off by default', async () => {
    const { server, runs } = await countingServer({})
    const client = await connectClient(server)
    await Promise.all(Array.from({ length: 200 }, () => client.command('work')))
    expect(runs()).toBe(200)
    expect((await rejectionOf(client.command('missing'))).code).toBe(ErrorCode.NOT_FOUND)
  })

  it.each([
    [5, TypeError],
    [{ points: 5 }, RangeError],
    [{ points: 0, duration: 1000 }, RangeError],
    [{ points: 0.5, duration: 1000 }, RangeError],
    [{ points: 5, duration: Infinity }, RangeError],
    [{ points: 5, duration: 1000, closeAfter: -1 }, RangeError],
    [{ points: 5, duration: 1000, burst: 10 }, TypeError],
  ])('refuses rateLimit %j at construction', (rateLimit, type) => {
    expect(() => new MeshServer({ rateLimit: rateLimit as never })).toThrow(type)
  })
})
