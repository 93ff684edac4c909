import { describe, expect, it } from 'vitest'
import * as v from 'valibot'
import { z } from 'zod'
import type { StandardSchemaV1 } from '@standard-schema/spec'
import { defineApi, ErrorCode, MeshError, unchecked } from 'meshkit'
import { MeshServer, type MeshServerOptions } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { partitionOf } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { announce, answerCalls, entriesOf, portalServer, redisClient } from './support/hand-portal.js'
import { connectClient, eventually, deferred, nextEvent, type Deferred, recordingLogger, rejectionOf, startServer } from './support/harness.js'

/**
 * Run-time validation with the `api` option: the same API written with two real
 * Standard Schema libraries, so that nothing here leans on one library's quirks.
 */
const libraries = {
  zod: defineApi({
    commands: {
      profile: { payload: z.object({ name: z.string(), age: z.number().int().min(0) }), result: z.unknown() },
      note: { payload: z.object({ text: z.string().trim(), count: z.number().default(1) }) },
      numbers: { payload: z.array(z.number()) },
      slow: { payload: z.string().refine(async (text) => (await gates.get(text)?.promise) ?? false) },
    },
    messages: {
      chat: z.object({ text: z.string().trim().min(1), room: z.string().default('lobby') }),
    },
  }),
  valibot: defineApi({
    commands: {
      profile: { payload: v.object({ name: v.string(), age: v.pipe(v.number(), v.integer(), v.minValue(0)) }), result: v.unknown() },
      note: { payload: v.object({ text: v.pipe(v.string(), v.trim()), count: v.optional(v.number(), 1) }) },
      numbers: { payload: v.array(v.number()) },
      slow: { payload: v.pipeAsync(v.string(), v.checkAsync(async (text) => (await gates.get(text)?.promise) ?? false)) },
    },
    messages: {
      chat: v.object({ text: v.pipe(v.string(), v.trim(), v.minLength(1)), room: v.optional(v.string(), 'lobby') }),
    },
  }),
}

/** What the async `slow` schemas wait for, by payload: the test decides when (and how) they finish. */
const gates = new Map<string, Deferred<boolean>>()

/** A server with `api`, recording what middleware and handlers saw; the `api` option is typed by the server engineer's part, hence the cast. */
async function validatingServer(api: object, options: MeshServerOptions = {}): Promise<{ server: MeshServer; seen: string[] }> {
  const seen: string[] = []
  const server = await startServer({ ...options, api } as MeshServerOptions, (created) => {
    created.addMiddleware((ctx) => void seen.push(`global:${ctx.message ?? ctx.command}`))
    const own = (ctx: { command: string }): void => void seen.push(`own:${ctx.command}`)
    for (const name of ['profile', 'note', 'numbers', 'slow', 'free']) {
      created.registerCommand(name, (ctx) => {
        seen.push(`handler:${name}`)
        return ctx.payload
      }, [own])
    }
    created.onMessage('chat', (ctx) => void seen.push(`chat:${JSON.stringify(ctx.data)}`))
  })
  return { server, seen }
}

function pathsOf(error: MeshError): unknown[] {
  return (error.data as { issues: { path?: unknown[] }[] }).issues.map((issue) => issue.path)
}

for (const [library, api] of Object.entries(libraries)) {
  describe(`validation with ${library}`, () => {
    it('refuses an invalid command payload with BAD_REQUEST and the issues\' paths, before any middleware or the handler', async () => {
      const { server, seen } = await validatingServer(api)
      const client = await connectClient(server)
      const error = await rejectionOf(client.command('profile', { name: 7, age: -1 }))
      expect(error.code).toBe(ErrorCode.BAD_REQUEST)
      expect(pathsOf(error).sort()).toEqual([['age'], ['name']])
      for (const issue of (error.data as { issues: { message: unknown }[] }).issues) expect(typeof issue.message).toBe('string')
      // Neither the global middleware, nor the command's own, nor the handler ran.
      expect(seen).toEqual([])
      expect(await client.command('profile', { name: 'Ada', age: 36 })).toEqual({ name: 'Ada', age: 36 })
      expect(seen).toEqual(['global:profile', 'own:profile', 'handler:profile'])
    })

    it('gives middleware and the handler the schema\'s output: transforms and defaults', async () => {
      const { server } = await validatingServer(api)
      const seenByMiddleware: unknown[] = []
      server.addMiddleware((ctx) => void seenByMiddleware.push(ctx.payload))
      const client = await connectClient(server)
      expect(await client.command('note', { text: '  hello  ' })).toEqual({ text: 'hello', count: 1 })
      expect(seenByMiddleware).toEqual([{ text: 'hello', count: 1 }])
    })

    it('waits for an async schema, in either verdict', async () => {
      const { server, seen } = await validatingServer(api)
      const client = await connectClient(server)
      gates.set(`${library}-yes`, deferred<boolean>())
      gates.set(`${library}-no`, deferred<boolean>())
      const accepted = client.command('slow', `${library}-yes`)
      const refused = client.command('slow', `${library}-no`)
      // While the schema decides, nothing of `slow` runs, and other commands are not held back.
      expect(await client.command('note', { text: 'x' })).toEqual({ text: 'x', count: 1 })
      expect(seen).toEqual(['global:note', 'own:note', 'handler:note'])
      gates.get(`${library}-no`)!.resolve(false)
      gates.get(`${library}-yes`)!.resolve(true)
      expect((await rejectionOf(refused)).code).toBe(ErrorCode.BAD_REQUEST)
      expect(await accepted).toBe(`${library}-yes`)
      expect(seen.filter((entry) => entry.endsWith(':slow'))).toEqual(['global:slow', 'own:slow', 'handler:slow'])
    })

    it('drops an invalid client message with an error event (BAD_REQUEST, data.type), counts it, and passes valid ones transformed', async () => {
      const { server, seen } = await validatingServer(api)
      const client = await connectClient(server)
      const refused = nextEvent<MeshError>(client, 'error')
      client.send('chat', { text: '   ' })
      const error = await refused
      expect(error.code).toBe(ErrorCode.BAD_REQUEST)
      expect((error.data as { type: string }).type).toBe('chat')
      expect(pathsOf(error)).toEqual([['text']])
      client.send('chat', { text: ' hi ' })
      // A command after the message is answered after the message was handled (one connection keeps its order).
      await client.command('free')
      expect(seen).toEqual(['global:chat', 'chat:{"text":"hi","room":"lobby"}', 'global:free', 'own:free', 'handler:free'])
      expect(server.stats.invalidMessages).toBe(1)
      expect(server.stats.droppedMessages).toBe(0)
    })

    it('bounds the issues of a huge invalid payload, and the server stays up for everyone', async () => {
      const { server } = await validatingServer(api)
      const [flooder, other] = await Promise.all([connectClient(server), connectClient(server)])
      const huge = Array.from({ length: 30_000 }, (_, index) => String(index))
      const refused = rejectionOf(flooder.command('numbers', huge))
      expect(await other.command('note', { text: 'still here' })).toEqual({ text: 'still here', count: 1 })
      const error = await refused
      expect(error.code).toBe(ErrorCode.BAD_REQUEST)
      expect(pathsOf(error)).toEqual(Array.from({ length: 20 }, (_, index) => [index]))
      expect(await flooder.command('numbers', [1, 2])).toEqual([1, 2])
    })
  })
}

/** A Standard Schema by hand, for the faults no real library makes on purpose. */
function schemaOf(validate: (value: unknown) => unknown): StandardSchemaV1 {
  return { '~standard': { version: 1, vendor: 'test', validate: validate as StandardSchemaV1['~standard']['validate'] } }
}

describe('validation faults and what is not validated', () => {
  it('answers INTERNAL_ERROR for a schema that throws, rejects or returns no result, logs it, and keeps serving', async () => {
    const { logger, entries } = recordingLogger()
    const api = defineApi({
      commands: {
        throws: { payload: schemaOf(() => { throw new Error('schema bug') }) },
        rejects: { payload: schemaOf(() => Promise.reject(new Error('async schema bug'))) },
        garbage: { payload: schemaOf(() => undefined) },
      },
      messages: { broken: schemaOf(() => { throw new Error('message schema bug') }) },
    })
    const ran: string[] = []
    const server = await startServer({ api, logger } as MeshServerOptions, (created) => {
      for (const name of ['throws', 'rejects', 'garbage']) created.registerCommand(name, () => void ran.push(name))
      created.registerCommand('ok', () => 'ok')
      created.onMessage('broken', () => void ran.push('broken'))
    })
    const [client, other] = await Promise.all([connectClient(server), connectClient(server)])
    for (const name of ['throws', 'rejects', 'garbage']) expect((await rejectionOf(client.command(name, 1))).code).toBe(ErrorCode.INTERNAL_ERROR)
    const refused = nextEvent<MeshError>(client, 'error')
    client.send('broken', 1)
    const error = await refused
    expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(error.data).toEqual({ type: 'broken' })
    expect(entries.filter((entry) => entry.level === 'error')).toHaveLength(4)
    expect(server.stats.droppedMessages).toBe(1)
    expect(ran).toEqual([])
    expect(await client.command('ok')).toBe('ok')
    expect(await other.command('ok')).toBe('ok')
  })

  it('keeps a connection\'s messages in order behind an async message schema', async () => {
    const gate = deferred<boolean>()
    const api = defineApi({ messages: { first: z.string().refine(async () => gate.promise) } })
    const handled: string[] = []
    const second = deferred()
    const server = await startServer({ api } as MeshServerOptions, (created) => {
      created.onMessage('first', (ctx) => void handled.push(`first:${String(ctx.data)}`))
      created.onMessage('second', () => {
        handled.push('second')
        second.resolve()
      })
      created.registerCommand('ping', () => 'pong')
    })
    const client = await connectClient(server)
    client.send('first', 'a')
    client.send('second')
    // Both messages have arrived once a command sent after them is answered (commands do not wait behind messages).
    expect(await client.command('ping')).toBe('pong')
    expect(handled).toEqual([])
    gate.resolve(true)
    await second.promise
    expect(handled).toEqual(['first:a', 'second'])
  })

  it('validates nothing for unchecked<T>() entries, commands without a payload schema, names not in the api, results', async () => {
    const api = defineApi({
      commands: {
        trusted: { payload: unchecked<number>() },
        bare: { result: z.string() },
      },
      messages: { raw: unchecked<{ n: number }>() },
    })
    const messages: unknown[] = []
    const server = await startServer({ api } as MeshServerOptions, (created) => {
      for (const name of ['trusted', 'bare', 'absent']) created.registerCommand(name, (ctx) => ctx.payload)
      created.registerCommand('number', () => 42)
      created.onMessage('raw', (ctx) => void messages.push(ctx.data))
    })
    const client = await connectClient(server)
    expect(await client.command('trusted', 'not a number')).toBe('not a number')
    expect(await client.command('bare', { any: ['thing'] })).toEqual({ any: ['thing'] })
    expect(await client.command('absent', [1, 'two'])).toEqual([1, 'two'])
    client.send('raw', 'not an object')
    expect(await client.command('number')).toBe(42)
    expect(messages).toEqual(['not an object'])
    expect(server.stats.invalidMessages).toBe(0)
  })

  it('applies * patterns (exact names first, either of two matching patterns accepts) but never to built-in commands', async () => {
    const api = defineApi({
      commands: {
        '*': { payload: z.number() },
        'text:*': { payload: z.string() },
        'text:exact': { payload: z.boolean() },
      },
    })
    const server = await startServer({ api } as MeshServerOptions, (created) => {
      for (const name of ['count', 'text:any', 'text:exact']) created.registerCommand(name, (ctx) => ctx.payload)
      created.exposeChannel('news')
    })
    const client = await connectClient(server)
    expect(await client.command('count', 3)).toBe(3)
    expect((await rejectionOf(client.command('count', 'three'))).code).toBe(ErrorCode.BAD_REQUEST)
    // `text:any` matches `*` and `text:*`: a number or a string.
    expect(await client.command('text:any', 'words')).toBe('words')
    expect(await client.command('text:any', 5)).toBe(5)
    expect((await rejectionOf(client.command('text:any', true))).code).toBe(ErrorCode.BAD_REQUEST)
    expect(await client.command('text:exact', true)).toBe(true)
    expect((await rejectionOf(client.command('text:exact', 'words'))).code).toBe(ErrorCode.BAD_REQUEST)
    // mesh/subscribe takes an object, which `*` would refuse.
    await expect(client.subscribe('news', () => {})).resolves.toBeDefined()
  })

  it('throws at construction for an api that is not one', () => {
    const bad: unknown[] = [
      'api',
      { command: {} },
      { commands: [] },
      { commands: { x: 'string' } },
      { commands: { x: { payload: { type: 'string' } } } },
      { commands: { x: { payload: { '~standard': { version: 2, vendor: 'x', validate: () => ({ value: 1 }) } } } } },
      { commands: { x: { payload: { '~standard': { version: 1, vendor: 'x' } } } } },
      { messages: { chat: z } },
      { events: 'none' },
    ]
    for (const [index, api] of bad.entries()) expect(() => new MeshServer({ port: 0, api } as MeshServerOptions), `bad api #${index}`).toThrow(TypeError)
  })
})

describe('validation of what goes to portals', () => {
  const api = defineApi({
    commands: { sum: { payload: z.object({ a: z.number(), b: z.number().default(0) }), result: z.number() } },
    messages: { chat: v.object({ text: v.pipe(v.string(), v.trim(), v.minLength(1)) }) },
  })

  it('refuses a forwarded command\'s invalid payload on the instance, and forwards a valid one as the schema\'s output', async () => {
    const namespace = uniqueNamespace('validation-portal-rpc')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await announce(redis, keys, 'p1', 'g', ['sum'])
    const seen = await answerCalls(keys, 'g', 'sum', (body) => {
      const { a, b } = body.payload as { a: number; b: number }
      return [1, a + b]
    })
    const server = await portalServer(namespace, { enabled: true }, { api } as MeshServerOptions)
    const ran: unknown[] = []
    server.addMiddleware((ctx) => void ran.push(ctx.payload))
    const client = await connectClient(server)
    const error = await rejectionOf(client.command('sum', { a: 'two' }))
    expect(error.code).toBe(ErrorCode.BAD_REQUEST)
    expect(pathsOf(error)).toEqual([['a']])
    expect(await client.command('sum', { a: 2 })).toBe(2)
    // Only the valid call reached the middleware and the portal's stream, with the default filled in.
    expect(ran).toEqual([{ a: 2, b: 0 }])
    expect(seen.map((entry) => (entry.body as { payload: unknown }).payload)).toEqual([{ a: 2, b: 0 }])
    expect(await redis.xlen(keys.portalCommands('g', 'sum'))).toBe(1)
  })

  it('writes no invalid client message to the portal stream', async () => {
    const namespace = uniqueNamespace('validation-portal-messages')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const server = await portalServer(namespace, { enabled: true, partitions: 2 }, { api } as MeshServerOptions)
    const client = await connectClient(server)
    const refused = nextEvent<MeshError>(client, 'error')
    client.send('chat', { text: 42 })
    client.send('chat', { text: ' hi ' })
    expect((await refused).code).toBe(ErrorCode.BAD_REQUEST)
    const entries = await eventually(async () => {
      const found = await entriesOf(redis, keys.portalEvents(partitionOf(client.id!, 2)))
      expect(found.map((entry) => entry.kind)).toEqual(['connection', 'message'])
      return found
    })
    // The one message written is the valid one, sent after the invalid one: the invalid one was decided first.
    expect(entries[1]!.body).toMatchObject({ type: 'chat', data: { text: 'hi' } })
    expect(server.stats.invalidMessages).toBe(1)
  })
})
