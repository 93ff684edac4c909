import { describe, expect, it } from 'vitest'
import { CloseCode, ErrorCode, FrameType, MeshError } from 'meshkit'
import { MeshClient, type MeshClientOptions } from 'meshkit/client'
import type { MessageContext, MeshServer, MeshServerOptions } from 'meshkit/server'
import { connectClient, createClient, deferred, nextEvent, RawClient, recordingLogger, startServer, waitFor } from './support/harness.js'

/** A server that records, in arrival order, every message (`m:<data>`) and every `note` command (`c:<payload>`). */
async function recordingServer(options: MeshServerOptions = {}, configure?: (server: MeshServer) => void): Promise<{ server: MeshServer; seen: unknown[] }> {
  const seen: unknown[] = []
  const server = await startServer(options, (created) => {
    created.onMessage('step', (ctx) => void seen.push(`m:${String(ctx.data)}`))
    created.registerCommand('note', (ctx) => void seen.push(`c:${String(ctx.payload)}`))
    configure?.(created)
  })
  return { server, seen }
}

/** Stops the server a client is connected to; resolves once the client knows, with the port to restart on. */
async function stopUnder(client: MeshClient, server: MeshServer): Promise<number> {
  const port = server.port
  const disconnected = nextEvent(client, 'disconnect')
  await server.close()
  await disconnected
  return port
}

describe('client.send and server.onMessage', () => {
  for (const codec of ['msgpack', 'json'] as const) {
    it(`delivers many messages in order with the commands between them (${codec})`, async () => {
      const { server, seen } = await recordingServer()
      const client = await connectClient(server, { codec })
      const expected: string[] = []
      const replies: Promise<unknown>[] = []
      for (let index = 0; index < 600; index++) {
        if (index % 7 === 3) {
          replies.push(client.command('note', index))
          expected.push(`c:${index}`)
        } else {
          expect(client.send('step', index)).toBe(true)
          expected.push(`m:${index}`)
        }
      }
      await Promise.all(replies)
      // The last command is answered after every message before it was handled.
      await client.command('note', 'end')
      expect(seen).toEqual([...expected, 'c:end'])
    })
  }

  it('keeps a message behind a command the client holds back for the server\'s maxPendingRequests', async () => {
    const holding = deferred()
    const release = deferred()
    const after = deferred()
    const { server, seen } = await recordingServer({ maxPendingRequests: 1 }, (created) => {
      created.registerCommand('hold', () => {
        holding.resolve()
        return release.promise
      })
      created.onMessage('after', () => after.resolve())
    })
    const client = await connectClient(server)
    const held = client.command('hold')
    await holding.promise
    const queued = client.command('note', 'queued')
    client.send('step', 'after')
    client.send('after')
    release.resolve()
    await Promise.all([held, queued, after.promise])
    expect(seen).toEqual(['c:queued', 'm:after'])
  })

  it('calls typed and "*" handlers with type, data and connection, until they are removed', async () => {
    const calls: string[] = []
    const server = await startServer()
    let context: MessageContext | undefined
    const offTyped = server.onMessage('greet', (ctx) => {
      context = ctx
      calls.push(`typed:${ctx.type}`)
    })
    server.onMessage('*', (ctx) => void calls.push(`any:${ctx.type}`))
    server.registerCommand('sync', () => true)
    const client = await connectClient(server, { codec: 'json' })
    client.send('greet', { name: 'ada' })
    client.send('other')
    await client.command('sync')
    expect(calls).toEqual(['typed:greet', 'any:greet', 'any:other'])
    expect(context!.data).toEqual({ name: 'ada' })
    expect(context!.message).toBe('greet')
    expect(context!.command).toBeUndefined()
    expect(context!.connection.id).toBe(client.id)
    expect(context!.connection.userId).toBeUndefined()
    offTyped()
    client.send('greet')
    await client.command('sync')
    expect(calls.slice(3)).toEqual(['any:greet'])
    expect(server.stats.unhandledMessages).toBe(0)
  })

  it('counts messages no handler takes and logs them at debug, not as errors', async () => {
    const { logger, entries } = recordingLogger()
    const server = await startServer({ logger }, (created) => created.registerCommand('sync', () => true))
    const client = await connectClient(server)
    client.send('nobody-listens', 1)
    client.send('nobody-listens', 2)
    await client.command('sync')
    expect(server.stats.unhandledMessages).toBe(2)
    expect(entries.filter((entry) => entry.details?.type === 'nobody-listens').map((entry) => entry.level)).toEqual(['debug', 'debug'])
  })

  it('keeps a throwing handler (sync and async) from hurting the server, the other handlers or other clients', async () => {
    const { logger, entries } = recordingLogger()
    const reached: unknown[] = []
    const rejected = deferred()
    const { server, seen } = await recordingServer({ logger }, (created) => {
      created.onMessage('boom', () => {
        throw new Error('sync failure')
      })
      created.onMessage('boom', async () => {
        await Promise.resolve()
        rejected.resolve()
        throw new Error('async failure')
      })
      created.onMessage('*', (ctx) => void reached.push(ctx.type))
    })
    const client = await connectClient(server)
    const bystander = await connectClient(server)
    client.send('boom')
    client.send('step', 'after')
    await rejected.promise
    await client.command('note', 'alive')
    await bystander.command('note', 'bystander')
    expect(reached).toEqual(['boom', 'step'])
    expect(seen).toEqual(['m:after', 'c:alive', 'c:bystander'])
    expect(server.stats.failedMessages).toBe(2)
    expect(entries.filter((entry) => entry.message === 'message handler failed')).toHaveLength(2)
    expect(client.state).toBe('open')
  })
})

describe('messages through middleware and authentication', () => {
  it('runs global middleware with ctx.message set, lets it drop a message, and keeps order through async middleware', async () => {
    const looked: Array<{ message: unknown; command: unknown }> = []
    const last = deferred()
    const { server, seen } = await recordingServer({}, (created) => {
      created.addMiddleware(async (ctx) => {
        looked.push({ message: ctx.message, command: ctx.command })
        if (ctx.message === undefined) return
        // Some messages wait, so that a later one would overtake them if nothing kept the order.
        if ((ctx.payload as number) % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 5))
        if (ctx.payload === 13) throw new MeshError('FORBIDDEN', 'not this one')
      })
      created.onMessage('step', (ctx) => ctx.data === 39 && last.resolve())
    })
    const client = await connectClient(server)
    await client.command('note', 'start')
    for (let index = 0; index < 40; index++) client.send('step', index)
    await last.promise
    const expected = Array.from({ length: 40 }, (_, index) => index).filter((index) => index !== 13).map((index) => `m:${index}`)
    expect(seen).toEqual(['c:start', ...expected])
    expect(looked[0]).toEqual({ message: undefined, command: 'note' })
    expect(looked[1]).toEqual({ message: 'step', command: undefined })
    expect(server.stats.droppedMessages).toBe(1)
  })

  it('logs middleware dropping a message as the command path does: a refusal at debug, a fault at warn with its cause', async () => {
    const { logger, entries } = recordingLogger()
    const cause = new Error('connection reset')
    const server = await startServer({ logger }, (created) => {
      created.registerCommand('sync', () => true)
      created.addMiddleware((ctx) => {
        if (ctx.payload === 'refuse') throw new MeshError('FORBIDDEN', 'not this one')
        if (ctx.payload === 'fault') throw new MeshError(ErrorCode.INTERNAL_ERROR, 'store failed', { cause })
      })
    })
    const client = await connectClient(server)
    client.send('step', 'refuse')
    client.send('step', 'fault')
    await client.command('sync')
    const dropped = entries.filter((entry) => entry.details?.type === 'step')
    expect(dropped.map((entry) => entry.level)).toEqual(['debug', 'warn'])
    expect(dropped[1]?.details?.error).toBe(cause)
    expect(server.stats.droppedMessages).toBe(2)
  })

  it('drops messages past maxPendingRequests waiting behind async middleware, keeping the earlier ones in order', async () => {
    const gate = deferred()
    const last = deferred()
    const { server, seen } = await recordingServer({ maxPendingRequests: 2 }, (created) => {
      created.addMiddleware(async (ctx) => {
        if (ctx.payload === 0) await gate.promise
      })
      created.onMessage('step', (ctx) => ctx.data === 5 && last.resolve())
    })
    const client = await connectClient(server)
    // 0 holds the middleware; 1 and 2 wait behind it; 3 and 4 find the queue full.
    for (let index = 0; index < 5; index++) client.send('step', index)
    await waitFor(() => server.stats.droppedMessages === 2)
    gate.resolve()
    client.send('step', 5)
    await last.promise
    expect(seen).toEqual(['m:0', 'm:1', 'm:2', 'm:5'])
    expect(server.stats.droppedMessages).toBe(2)
  })

  it('drops messages before authentication when it is required, tells the client once, and handles them after', async () => {
    const users: unknown[] = []
    const server = await startServer({ authentication: { required: true } }, (created) => {
      created.onAuthenticate((credentials) => (credentials === 'secret' ? { id: 'ada', user: { name: 'Ada' } } : null))
      created.onMessage('step', (ctx) => void users.push([ctx.data, ctx.connection.userId, ctx.connection.user]))
    })
    const client = await connectClient(server)
    const refused = nextEvent<MeshError>(client, 'error')
    const errors: string[] = []
    client.on('error', (error) => errors.push(error.code))
    client.send('step', 1)
    client.send('step', 2)
    const error = await refused
    expect(error.code).toBe(ErrorCode.UNAUTHORIZED)
    expect(error.data).toEqual({ message: 'step' })
    await client.authenticate('secret')
    expect(server.stats.unauthorizedMessages).toBe(2)
    // The reply to authenticate came after both messages were dropped: one error frame for the two.
    expect(errors).toEqual([ErrorCode.UNAUTHORIZED])
    expect(users).toEqual([])
    const handled = deferred()
    server.onMessage('done', () => handled.resolve())
    client.send('step', 3)
    client.send('done')
    await handled.promise
    expect(users).toEqual([[3, 'ada', { name: 'Ada' }]])
  })
})

describe('messages across a reconnect', () => {
  it('holds messages sent while the server restarts and sends them in order after re-authentication', async () => {
    const first = await startServer({}, (created) => created.onAuthenticate(() => ({ id: 'ada', user: {} })))
    const client = await connectClient(first, { reconnectInterval: 20 })
    await client.authenticate('any')
    const port = await stopUnder(client, first)
    expect(client.state).toBe('reconnecting')
    for (let index = 0; index < 50; index++) expect(client.send('step', index)).toBe(true)
    const received: Array<[unknown, unknown]> = []
    const all = deferred()
    await startServer({ port, authentication: { required: true } }, (second) => {
      second.onAuthenticate(() => ({ id: 'ada', user: {} }))
      second.onMessage('step', (ctx) => {
        received.push([ctx.data, ctx.connection.userId])
        if (received.length === 50) all.resolve()
      })
    })
    await all.promise
    // Every one after re-authentication: the server requires it, and would have dropped any sent before.
    expect(received).toEqual(Array.from({ length: 50 }, (_, index) => [index, 'ada']))
  })

  it('holds messages sent while connecting, and drops (reporting it) one that proves larger than the server accepts', async () => {
    const received: unknown[] = []
    const done = deferred()
    const server = await startServer({ maxPayload: 1024 }, (created) =>
      created.onMessage('step', (ctx) => {
        received.push(ctx.data)
        if (ctx.data === 'last') done.resolve()
      }),
    )
    const client = createClient(server)
    const connected = client.connect()
    expect(client.state).toBe('connecting')
    const dropped = nextEvent<MeshError>(client, 'error')
    expect(client.send('step', 'first')).toBe(true)
    expect(client.send('step', 'y'.repeat(2048))).toBe(true)
    expect(client.send('step', 'last')).toBe(true)
    await connected
    const reported = await dropped
    expect(reported.code).toBe(ErrorCode.MESSAGES_DROPPED)
    expect(reported.data).toEqual({ count: 1, reason: 'too-large' })
    await done.promise
    expect(received).toEqual(['first', 'last'])
    expect(client.state).toBe('open')
  })

  it('reports what overflows maxQueuedMessages and what close() drops, with counts', async () => {
    const server = await startServer()
    const client = await connectClient(server, { reconnectInterval: 60_000, maxQueuedMessages: 3 })
    await stopUnder(client, server)
    const overflow = nextEvent<MeshError>(client, 'error')
    const accepted = Array.from({ length: 10 }, (_, index) => client.send('step', index))
    expect(accepted).toEqual([true, true, true, false, false, false, false, false, false, false])
    const reported = await overflow
    expect(reported.code).toBe(ErrorCode.MESSAGES_DROPPED)
    expect(reported.data).toEqual({ count: 7, reason: 'overflow' })
    const closing = nextEvent<MeshError>(client, 'error')
    await client.close()
    expect((await closing).data).toEqual({ count: 3, reason: 'closed' })
    expect(() => client.send('step')).toThrow(expect.objectContaining({ code: ErrorCode.CONNECTION_CLOSED }))
  })
})

describe('client.send: arguments and options', () => {
  it('throws for a bad type, before connect(), and for a message over the server\'s maxPayload', async () => {
    const server = await startServer({ maxPayload: 1024 })
    const idle = createClient(server)
    expect(() => idle.send('step')).toThrow(expect.objectContaining({ code: ErrorCode.CONNECTION_CLOSED }))
    const client = await connectClient(server)
    for (const type of ['', 'x'.repeat(256), 'é'.repeat(128), 42 as unknown as string]) {
      expect(() => client.send(type)).toThrow(expect.objectContaining({ code: ErrorCode.BAD_REQUEST }))
    }
    expect(client.send('x'.repeat(255))).toBe(true)
    // 254 UTF-8 bytes in 127 units: only an exact count tells it from 'é'.repeat(128).
    expect(client.send('é'.repeat(127))).toBe(true)
    expect(() => client.send('big', 'y'.repeat(2048))).toThrow(expect.objectContaining({ code: ErrorCode.PAYLOAD_TOO_LARGE }))
    expect(client.state).toBe('open')
  })

  it('refuses bad maxQueuedMessages values at construction', () => {
    for (const maxQueuedMessages of [-1, 1.5, Number.NaN]) {
      expect(() => new MeshClient('ws://127.0.0.1:1', { maxQueuedMessages } as MeshClientOptions)).toThrow(RangeError)
    }
    expect(() => new MeshClient('ws://127.0.0.1:1', { maxQueuedMessages: 0 })).not.toThrow()
  })
})

describe('the MESSAGE frame on the wire', () => {
  it('closes a connection flooding messages past rateLimit with 4029, having handled only its allowance', async () => {
    let handled = 0
    const server = await startServer({ rateLimit: { points: 5, duration: 60_000, closeAfter: 10 } }, (created) =>
      created.onMessage('step', () => void handled++),
    )
    const flooder = await RawClient.open(server)
    await flooder.hello()
    for (let index = 0; index < 100; index++) flooder.send([FrameType.MESSAGE, 'step', index])
    expect((await flooder.closed).code).toBe(CloseCode.RATE_LIMITED)
    expect(handled).toBe(5)
  })

  it('counts messages dropped over rateLimit before the connection is closed', async () => {
    let handled = 0
    const server = await startServer({ rateLimit: { points: 3, duration: 60_000, closeAfter: 100 } }, (created) =>
      created.onMessage('step', () => void handled++),
    )
    const client = await RawClient.open(server)
    await client.hello()
    for (let index = 0; index < 7; index++) client.send([FrameType.MESSAGE, 'step', index])
    await waitFor(() => server.stats.droppedMessages === 4)
    expect(handled).toBe(3)
  })

  it('closes a socket sending a message above maxPayload with 1009, as for commands', async () => {
    const server = await startServer({ maxPayload: 1024 })
    const raw = await RawClient.open(server)
    await raw.hello()
    raw.send([FrameType.MESSAGE, 'big', 'y'.repeat(2048)])
    expect((await raw.closed).code).toBe(1009)
  })

  it('answers a malformed message frame with BAD_REQUEST not tied to a request, and keeps the connection', async () => {
    const { server, seen } = await recordingServer()
    const raw = await RawClient.open(server, 'json')
    await raw.hello()
    for (const frame of [[FrameType.MESSAGE], [FrameType.MESSAGE, 42], [FrameType.MESSAGE, ''], [FrameType.MESSAGE, 'step', 1, 'extra']]) {
      raw.send(frame)
      expect((await raw.nextOfType(FrameType.ERROR)).slice(0, 3)).toEqual([FrameType.ERROR, 0, ErrorCode.BAD_REQUEST])
    }
    raw.send([FrameType.MESSAGE, 'step'])
    raw.send([FrameType.REQUEST, 1, 'note', 'end'])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, null])
    expect(seen).toEqual(['m:undefined', 'c:end'])
  })
})
