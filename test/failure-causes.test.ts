import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode, INTERNAL_ERROR_MESSAGE } from 'meshkit'
import { redisCall } from '../src/server/store/redis-client.js'
import { Dispatcher, MeshServer } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { recordingLogger, rejectionOf, startServer, waitFor, type LogEntry } from './support/harness.js'
import { freePort, startRedisServer } from './support/redis-server.js'

/** A server on this Redis URL; resolves with `ready()`'s error and what was logged. */
async function failedStart(url: string): Promise<{ code: string; cause: unknown; entries: LogEntry[] }> {
  const { logger, entries } = recordingLogger()
  const server = new MeshServer({ host: '127.0.0.1', port: 0, redis: url, redisTimeout: 1_500, namespace: uniqueNamespace('causes'), logger })
  onTestFinished(() => server.close())
  const error = await rejectionOf(server.ready())
  return { code: error.code, cause: (error.data as { cause?: unknown } | undefined)?.cause, entries }
}

/** The causes of the warnings about Redis connections. */
function loggedCauses(entries: LogEntry[]): unknown[] {
  return entries.filter((entry) => entry.level === 'warn' && entry.details?.cause !== undefined).map((entry) => entry.details!.cause)
}

describe('Redis errors name their cause', () => {
  it('a wrong password: UNAVAILABLE with cause AUTH, logged as AUTH', async () => {
    const redis = await startRedisServer(undefined, ['--requirepass', 'secret'])
    onTestFinished(() => redis.stop())
    const { code, cause, entries } = await failedStart(`redis://:wrong@127.0.0.1:${redis.port}`)
    expect(code).toBe(ErrorCode.UNAVAILABLE)
    expect(cause).toBe('AUTH')
    expect(loggedCauses(entries)).toContain('AUTH')
    // No password at all reads the same.
    expect((await failedStart(`redis://127.0.0.1:${redis.port}`)).cause).toBe('AUTH')
  })

  it('a refused port: cause ECONNREFUSED', async () => {
    const port = await freePort()
    const { code, cause, entries } = await failedStart(`redis://127.0.0.1:${port}`)
    expect(code).toBe(ErrorCode.UNAVAILABLE)
    expect(cause).toBe('ECONNREFUSED')
    expect(loggedCauses(entries)).toContain('ECONNREFUSED')
  })

  it('an unknown host: cause ENOTFOUND', async () => {
    const { code, cause, entries } = await failedStart('redis://no-such-host.invalid:6379')
    expect(code).toBe(ErrorCode.UNAVAILABLE)
    expect(cause).toBe('ENOTFOUND')
    expect(loggedCauses(entries)).toContain('ENOTFOUND')
  })

  it('a Dispatcher with a wrong password: dispatch rejects with cause AUTH', async () => {
    const redis = await startRedisServer(undefined, ['--requirepass', 'secret'])
    onTestFinished(() => redis.stop())
    const dispatcher = new Dispatcher(`redis://:wrong@127.0.0.1:${redis.port}`, { redisTimeout: 1_000 })
    onTestFinished(() => dispatcher.close())
    const error = await rejectionOf(dispatcher.dispatch('evt', 'x', ['u1']))
    expect(error.code).toBe(ErrorCode.UNAVAILABLE)
    expect((error.data as { cause?: unknown }).cause).toBe('AUTH')
  })
})

describe('a taken port', () => {
  it('is logged even when ready() is never awaited, and server.port never names it', async () => {
    const first = await startServer()
    const taken = first.port
    const { logger, entries } = recordingLogger()
    const second = new MeshServer({ host: '127.0.0.1', port: taken, logger })
    onTestFinished(() => second.close())
    await waitFor(() => entries.some((entry) => entry.level === 'error' && (entry.details?.error as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE'))
    expect(second.port).toBe(0)
    expect(first.port).toBe(taken)
  })
})

describe('Redis errors that reach clients', () => {
  it('keep Redis\'s own text (addresses, script source) in cause, on the server', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:6379'), { code: 'ECONNREFUSED' })
    const down = await rejectionOf(redisCall(() => Promise.reject(refused)))
    expect(down.code).toBe(ErrorCode.UNAVAILABLE)
    expect(down.data).toEqual({ cause: 'ECONNREFUSED' })
    expect(down.message).not.toContain('10.0.0.5')
    expect(down.cause).toBe(refused)

    const script = Object.assign(new Error('ERR user_script:3: attempt to index a nil value (SELECT secret)'), { name: 'ReplyError' })
    const bug = await rejectionOf(redisCall(() => Promise.reject(script)))
    expect(bug.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(bug.message).toBe(INTERNAL_ERROR_MESSAGE)
    expect(bug.cause).toBe(script)
  })
})
