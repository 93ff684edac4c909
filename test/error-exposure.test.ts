import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError } from 'meshkit'
import { MeshServer } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, recordingLogger, rejectionOf, startServer } from './support/harness.js'
import { Keys } from '../src/server/store/keys.js'

const SECRET = 'SELECT secret FROM users WHERE host = 10.0.0.7'

describe('errors thrown by handlers and middleware', () => {
  it('gives the client INTERNAL_ERROR with the generic message and logs the real error with the command and connection', async () => {
    const { logger, entries } = recordingLogger()
    const thrown = new Error(SECRET)
    const server = await startServer({ logger })
    server.registerCommand('leaky', () => {
      throw thrown
    })
    server.registerCommand('leaky-async', async () => {
      throw thrown
    })
    const client = await connectClient(server)
    for (const command of ['leaky', 'leaky-async']) {
      const error = await rejectionOf(client.command(command))
      expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
      expect(error.message).toBe(INTERNAL_ERROR_MESSAGE)
      expect(error.data).toBeUndefined()
    }
    const logged = entries.filter((entry) => entry.level === 'error')
    expect(logged.map((entry) => entry.details)).toEqual([
      { command: 'leaky', connectionId: client.id, error: thrown },
      { command: 'leaky-async', connectionId: client.id, error: thrown },
    ])
  })

  it('hides what a middleware throws, also a thrown string', async () => {
    const { logger, entries } = recordingLogger()
    const server = await startServer({ logger })
    let handled = 0
    server.addMiddleware((ctx) => {
      if (ctx.payload === 'string') throw SECRET
      if (ctx.payload === 'async') return Promise.reject(new TypeError(SECRET))
    })
    server.registerCommand('guarded', () => ++handled)
    const client = await connectClient(server)
    for (const payload of ['string', 'async']) {
      const error = await rejectionOf(client.command('guarded', payload))
      expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
      expect(error.message).toBe(INTERNAL_ERROR_MESSAGE)
    }
    expect(handled).toBe(0)
    expect(entries.filter((entry) => entry.level === 'error').map((entry) => entry.details?.command)).toEqual(['guarded', 'guarded'])
  })

  it('sends the thrown message with exposeErrors: true', async () => {
    const thrown = new Error(SECRET)
    const server = await startServer({ exposeErrors: true })
    server.registerCommand('leaky', async () => {
      throw thrown
    })
    const client = await connectClient(server)
    const error = await rejectionOf(client.command('leaky'))
    expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(error.message).toBe(thrown.message)
  })

  it.each([false, true])('passes a thrown MeshError through as thrown (exposeErrors: %s), without logging it as a fault', async (exposeErrors) => {
    const { logger, entries } = recordingLogger()
    const thrown = new MeshError('VALIDATION_FAILED', 'name is required', { data: { field: 'name' } })
    const server = await startServer({ exposeErrors, logger })
    server.registerCommand('validate', () => {
      throw thrown
    })
    const client = await connectClient(server)
    const error = await rejectionOf(client.command('validate'))
    expect({ code: error.code, message: error.message, data: error.data }).toEqual({ code: thrown.code, message: thrown.message, data: thrown.data })
    expect(entries.filter((entry) => entry.level === 'error')).toEqual([])
  })

  it('keeps what onAuthenticate throws out of the UNAUTHORIZED refusal unless exposeErrors', async () => {
    const { logger, entries } = recordingLogger()
    const thrown = new Error(SECRET)
    const hidden = await startServer({ logger, authentication: { disconnectOnFail: false } }, (server) =>
      server.onAuthenticate(() => {
        throw thrown
      }),
    )
    const refusal = await rejectionOf((await connectClient(hidden)).authenticate({ token: 'x' }))
    expect(refusal.code).toBe(ErrorCode.UNAUTHORIZED)
    expect(refusal.message).not.toContain(SECRET)
    expect(entries.some((entry) => entry.details?.error === thrown)).toBe(true)

    const exposed = await startServer({ exposeErrors: true, authentication: { disconnectOnFail: false } }, (server) =>
      server.onAuthenticate(() => {
        throw thrown
      }),
    )
    const told = await rejectionOf((await connectClient(exposed)).authenticate({ token: 'x' }))
    expect(told.code).toBe(ErrorCode.UNAUTHORIZED)
    expect(told.message).toBe(thrown.message)
  })

  it('logs a store fault that reaches the client as INTERNAL_ERROR (a Redis reply error), with the command and connection', async () => {
    const { logger, entries } = recordingLogger()
    const namespace = uniqueNamespace('error-exposure')
    const redis = new Redis(inject('redisUrl'))
    onTestFinished(async () => {
      await redis.quit()
    })
    // A key of the wrong type: Redis answers the channel's reads with WRONGTYPE, a reply error.
    await redis.hset(new Keys(namespace).channelSequence('broken'), 'not', 'a counter')
    const server = await startServer({ redis: inject('redisUrl'), namespace, logger }, (server) => server.exposeChannel('broken'))
    const client = await connectClient(server)
    const error = await rejectionOf(client.subscribe('broken', () => {}, { historyLimit: 5 }))
    expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(error.message).toBe(INTERNAL_ERROR_MESSAGE)
    const logged = entries.filter((entry) => entry.level === 'error' && entry.details?.command === 'mesh/subscribe')
    expect(logged).toHaveLength(1)
    expect(logged[0]!.details!.connectionId).toBe(client.id)
    // Redis's own error, whose text the client never sees, so that the log says what failed.
    expect((logged[0]!.details!.error as Error).name).toBe('ReplyError')
  })

  it('refuses an exposeErrors that is not a boolean at construction', () => {
    expect(() => new MeshServer({ exposeErrors: 'yes' as unknown as boolean })).toThrow(TypeError)
  })
})
