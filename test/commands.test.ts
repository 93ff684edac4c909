import { describe, expect, it } from 'vitest'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError } from 'meshkit'
import type { MeshContext, Middleware } from 'meshkit/server'
import { connectClient, rejectionOf as rejection, startServer } from './support/harness.js'

describe('commands', () => {
  it('answers with what the handler returns, sync or async', async () => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ctx.payload)
    server.registerCommand('double', async (ctx: MeshContext<number>) => ctx.payload * 2)
    server.registerCommand('nothing', () => undefined)
    const client = await connectClient(server)
    expect(await client.command('echo', 'Hello, world!')).toBe('Hello, world!')
    expect(await client.command('double', 21)).toBe(42)
    expect(await client.command('nothing')).toBeNull()
  })

  it('gives the handler the command, payload, connection and server', async () => {
    const server = await startServer()
    server.registerCommand('inspect', (ctx) => ({
      command: ctx.command,
      payload: ctx.payload,
      connectionId: ctx.connection.id,
      sameServer: ctx.server === server,
    }))
    const client = await connectClient(server)
    expect(await client.command('inspect', { a: 1 })).toEqual({
      command: 'inspect',
      payload: { a: 1 },
      connectionId: client.id,
      sameServer: true,
    })
  })

  it('rejects with INTERNAL_ERROR and the generic message when a handler throws', async () => {
    const server = await startServer()
    server.registerCommand('fail', () => {
      throw new Error('disk on fire')
    })
    server.registerCommand('fail-async', async () => {
      throw new Error('later fire')
    })
    const client = await connectClient(server)
    const sync = await rejection(client.command('fail'))
    expect(sync.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(sync.message).toBe(INTERNAL_ERROR_MESSAGE)
    const async = await rejection(client.command('fail-async'))
    expect(async.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(async.message).toBe(INTERNAL_ERROR_MESSAGE)
  })

  it('keeps the code and data of a thrown MeshError', async () => {
    const server = await startServer()
    server.registerCommand('validate', () => {
      throw new MeshError('VALIDATION_FAILED', 'name is required', { data: { field: 'name' } })
    })
    const client = await connectClient(server)
    const error = await rejection(client.command('validate'))
    expect(error.code).toBe('VALIDATION_FAILED')
    expect(error.message).toBe('name is required')
    expect(error.data).toEqual({ field: 'name' })
  })

  it.each(['missing', '__proto__', 'toString', 'constructor', 'hasOwnProperty', ''])(
    'treats %j as an unknown command',
    async (name) => {
      const server = await startServer()
      server.registerCommand('echo', (ctx) => ctx.payload)
      const client = await connectClient(server)
      expect((await rejection(client.command(name))).code).toBe(ErrorCode.NOT_FOUND)
      expect(await client.command('echo', 'still here')).toBe('still here')
    },
  )

  it('stops the chain when a middleware throws: the handler never runs', async () => {
    const server = await startServer()
    let handled = 0
    server.addMiddleware(async (ctx) => {
      if (ctx.payload !== 'let me in') throw new MeshError('UNAUTHORIZED', 'no entry')
    })
    server.registerCommand('secret', () => {
      handled++
      return 'the secret'
    })
    const client = await connectClient(server)
    expect((await rejection(client.command('secret', 'please'))).code).toBe('UNAUTHORIZED')
    expect(handled).toBe(0)
    expect(await client.command('secret', 'let me in')).toBe('the secret')
    expect(handled).toBe(1)
  })

  it('runs global middleware before per-command middleware, in order, sync and async mixed', async () => {
    const server = await startServer()
    const order: string[] = []
    server.registerCommand('ordered', () => order.push('handler'), [
      async () => {
        order.push('own-1')
      },
      () => {
        order.push('own-2')
      },
    ])
    // Added after the command: global middleware still runs first.
    server.addMiddleware(
      () => {
        order.push('global-1')
      },
      async () => {
        await Promise.resolve()
        order.push('global-2')
      },
    )
    const client = await connectClient(server)
    await client.command('ordered')
    expect(order).toEqual(['global-1', 'global-2', 'own-1', 'own-2', 'handler'])
  })

  it('lets middleware add fields that handlers read', async () => {
    const server = await startServer()
    const identify: Middleware<{ user: { name: string } }> = (ctx) => {
      ctx.user = { name: String(ctx.payload) }
    }
    const app = server.addMiddleware(identify)
    const requireAdmin: Middleware<{ user: { name: string } }> = (ctx) => {
      if (ctx.user?.name !== 'ada') throw new MeshError('FORBIDDEN', 'admins only')
    }
    app.registerCommand('whoami', (ctx) => ctx.user.name, [requireAdmin])
    const client = await connectClient(server)
    expect(await client.command('whoami', 'ada')).toBe('ada')
    expect((await rejection(client.command('whoami', 'bob'))).code).toBe('FORBIDDEN')
  })

  it('rejects a per-command middleware failure without running later middleware', async () => {
    const server = await startServer()
    const ran: string[] = []
    server.registerCommand('guarded', () => ran.push('handler'), [
      () => {
        ran.push('first')
        throw new MeshError('BLOCKED', 'blocked here', { data: 1 })
      },
      () => {
        ran.push('second')
      },
    ])
    const client = await connectClient(server)
    const error = await rejection(client.command('guarded'))
    expect([error.code, error.data]).toEqual(['BLOCKED', 1])
    expect(ran).toEqual(['first'])
  })

  it('answers a reply it cannot encode with ENCODE_ERROR instead of dropping it', async () => {
    const server = await startServer()
    server.registerCommand('circular', () => {
      const value: Record<string, unknown> = {}
      value.self = value
      return value
    })
    const client = await connectClient(server, { codec: 'json' })
    expect((await rejection(client.command('circular'))).code).toBe(ErrorCode.ENCODE_ERROR)
  })

  it('keeps answering concurrent requests to the right callers', async () => {
    const server = await startServer()
    server.registerCommand('delayed', async (ctx: MeshContext<number>) => {
      await new Promise((resolve) => setTimeout(resolve, ctx.payload % 7))
      return ctx.payload
    })
    const client = await connectClient(server)
    const inputs = Array.from({ length: 100 }, (_, index) => index)
    expect(await Promise.all(inputs.map((n) => client.command('delayed', n)))).toEqual(inputs)
  })
})
