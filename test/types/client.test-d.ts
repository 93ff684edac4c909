import { describe, expectTypeOf, it } from 'vitest'
import * as v from 'valibot'
import { z } from 'zod'
import { defineApi, unchecked } from 'meshkit'
import { MeshClient, type ClientEvents, type MeshError, type PresenceEvent, type SubscribeResult } from 'meshkit/client'

interface ChatApi {
  commands: {
    echo: { payload: string; result: string }
    ping: { result: 'pong' }
    page: { payload?: { from: number } | undefined; result: string[] }
  }
  events: { welcome: { id: string }; bye: undefined }
  messages: { typing: { room: string }; idle: undefined }
  channels: { [channel: `chat:${string}`]: { text: string }; ticker: number }
}

const api = defineApi({
  commands: {
    add: { payload: v.object({ a: v.number(), b: v.pipe(v.string(), v.transform(Number)) }), result: z.number() },
    now: { result: unchecked<Date>() },
  },
  events: { tick: z.object({ at: z.number() }) },
  messages: { typing: z.object({ room: z.string() }) },
  channels: { 'news:*:daily': unchecked<{ headline: string }>() },
})

// Only the type of the API object: the client never loads schema code.
declare const chat: MeshClient<ChatApi>
declare const schemas: MeshClient<typeof api>
declare const untyped: MeshClient

describe('a client typed by an interface', () => {
  it('infers command results and checks names and payloads', () => {
    expectTypeOf(chat.command('echo', 'hi')).toEqualTypeOf<Promise<string>>()
    expectTypeOf(chat.command('ping')).toEqualTypeOf<Promise<'pong'>>()
    expectTypeOf(chat.command('page')).toEqualTypeOf<Promise<string[]>>()
    expectTypeOf(chat.command('page', { from: 2 }, 500)).toEqualTypeOf<Promise<string[]>>()
    expectTypeOf(chat.commandSync('echo', 'hi', 1_000)).toEqualTypeOf<string>()

    // @ts-expect-error echo takes a string
    void chat.command('echo', 1)
    // @ts-expect-error echo's payload is required
    void chat.command('echo')
    // @ts-expect-error no such command
    void chat.command('ehco', 'hi')
    // @ts-expect-error ping takes no payload
    void chat.command('ping', 'now')
    // @ts-expect-error commandSync checks the same
    chat.commandSync('echo', 1)
    // @ts-expect-error the untyped overload is gone once commands are typed
    void chat.command<number>('echo', 'hi')
  })

  it('types server events by name; lifecycle and presence events keep theirs', () => {
    chat.on('welcome', (payload) => expectTypeOf(payload).toEqualTypeOf<{ id: string }>())
    chat.once('bye', (payload) => expectTypeOf(payload).toEqualTypeOf<undefined>())
    chat.on('connect', (event) => expectTypeOf(event).toEqualTypeOf<ClientEvents['connect']>())
    chat.once('error', (error) => expectTypeOf(error).toEqualTypeOf<MeshError>())
    chat.on('presence', (event) => expectTypeOf(event).toEqualTypeOf<PresenceEvent>())
    expectTypeOf(chat.on('welcome', () => {})).toEqualTypeOf<() => void>()

    // @ts-expect-error no such event
    chat.on('welcom', () => {})
    // @ts-expect-error no such event, for once too
    chat.once('welcom', () => {})
    // @ts-expect-error the listener's parameter is the event's payload
    chat.on('welcome', (payload: { id: number }) => payload)
    // @ts-expect-error the untyped overload is gone once events are typed
    chat.on<string>('anything', () => {})
    // @ts-expect-error a lifecycle event's listener gets its payload
    chat.on('connect', (event: string) => event)
  })

  it('checks message types and data', () => {
    expectTypeOf(chat.send('typing', { room: 'lobby' })).toEqualTypeOf<boolean>()
    chat.send('idle')
    // @ts-expect-error typing's data is { room }
    chat.send('typing', { room: 1 })
    // @ts-expect-error typing's data is required
    chat.send('typing')
    // @ts-expect-error no such message type
    chat.send('typo', {})
  })

  it('types channels by name and pattern', () => {
    expectTypeOf(chat.subscribe('chat:lobby', (message) => expectTypeOf(message).toEqualTypeOf<{ text: string }>())).toEqualTypeOf<
      Promise<SubscribeResult<{ text: string }>>
    >()
    void chat.subscribe('ticker', (price) => expectTypeOf(price).toEqualTypeOf<number>(), { historyLimit: 10 })
    void chat.unsubscribe('chat:lobby')

    // @ts-expect-error not a channel of the API
    void chat.subscribe('news', () => {})
    // @ts-expect-error the callback gets the channel's messages
    void chat.subscribe('chat:lobby', (message: { text: number }) => message)
    // @ts-expect-error not a channel of the API
    void chat.unsubscribe('news')
    // @ts-expect-error the untyped overload is gone once channels are typed
    void chat.subscribe<number>('chat:lobby', () => {})
  })
})

describe('a client typed by an object of zod and valibot schemas', () => {
  it('sends schema inputs and gets schema outputs', () => {
    // The client sends the input: b is a string the server's schema turns into a number.
    expectTypeOf(schemas.command('add', { a: 1, b: '2' })).toEqualTypeOf<Promise<number>>()
    expectTypeOf(schemas.command('now')).toEqualTypeOf<Promise<Date>>()
    schemas.on('tick', (event) => expectTypeOf(event).toEqualTypeOf<{ at: number }>())
    schemas.send('typing', { room: 'lobby' })
    void schemas.subscribe('news:sport:daily', (message) => expectTypeOf(message).toEqualTypeOf<{ headline: string }>())

    // @ts-expect-error b is sent as a string
    void schemas.command('add', { a: 1, b: 2 })
    // @ts-expect-error add's payload is required
    void schemas.command('add')
    // @ts-expect-error no such command
    void schemas.command('sub', { a: 1, b: '2' })
    // @ts-expect-error no such event
    schemas.on('tock', () => {})
    // @ts-expect-error typing's data is { room: string }
    schemas.send('typing', { room: 1 })
    // @ts-expect-error the pattern is news:*:daily
    void schemas.subscribe('news:sport', () => {})
    // @ts-expect-error the callback gets the channel's messages
    void schemas.subscribe('news:sport:daily', (message: string) => message)
  })
})

describe('an untyped client', () => {
  it('takes any name and defaults every value to unknown', () => {
    expectTypeOf(untyped.command('anything', { any: 'payload' })).toEqualTypeOf<Promise<unknown>>()
    expectTypeOf(untyped.command('anything')).toEqualTypeOf<Promise<unknown>>()
    expectTypeOf(untyped.commandSync('anything', 1, 100)).toEqualTypeOf<unknown>()
    untyped.on('anything', (payload) => expectTypeOf(payload).toEqualTypeOf<unknown>())
    untyped.once('anything', (payload) => expectTypeOf(payload).toEqualTypeOf<unknown>())
    void untyped.subscribe('anything', (message) => expectTypeOf(message).toEqualTypeOf<unknown>())
    expectTypeOf(untyped.subscribe('anything', () => {})).toEqualTypeOf<Promise<SubscribeResult<unknown>>>()
    expectTypeOf(untyped.send('anything', { any: 'data' })).toEqualTypeOf<boolean>()
    untyped.send('anything')
    void untyped.unsubscribe('anything')
  })

  it('keeps the explicit type arguments', () => {
    expectTypeOf(untyped.command<number>('sum', [1, 2])).toEqualTypeOf<Promise<number>>()
    expectTypeOf(untyped.commandSync<string>('echo', 'hi')).toEqualTypeOf<string>()
    untyped.on<{ id: string }>('welcome', (payload) => expectTypeOf(payload).toEqualTypeOf<{ id: string }>())
    untyped.once<number>('count', (payload) => expectTypeOf(payload).toEqualTypeOf<number>())
    expectTypeOf(untyped.subscribe<{ text: string }>('chat:lobby', () => {})).toEqualTypeOf<Promise<SubscribeResult<{ text: string }>>>()
    // As before: an annotated callback gives the message type.
    expectTypeOf(untyped.subscribe('chat:lobby', (message: { text: string }) => message)).toEqualTypeOf<Promise<SubscribeResult<{ text: string }>>>()
  })

  it('keeps lifecycle and presence events typed', () => {
    untyped.on('disconnect', (event) => expectTypeOf(event).toEqualTypeOf<{ code: number; reason: string }>())
    untyped.once('latency', (ms) => expectTypeOf(ms).toEqualTypeOf<number>())
    untyped.on('presence', (event) => expectTypeOf(event).toEqualTypeOf<PresenceEvent>())
    // Explicitly, as code written before `presence` was typed does.
    untyped.on<PresenceEvent<{ typing: boolean }>>('presence', (event) => expectTypeOf(event.state).toEqualTypeOf<{ typing: boolean }>())
  })
})

describe('typed and untyped clients together', () => {
  it('a typed client goes where a plain MeshClient is expected', () => {
    expectTypeOf(chat).toExtend<MeshClient>()
    expectTypeOf(schemas).toExtend<MeshClient>()
    expectTypeOf(new MeshClient<ChatApi>('ws://localhost:1')).toEqualTypeOf<MeshClient<ChatApi>>()
  })
})

describe('a client typing some sections only', () => {
  it('leaves the other sections untyped, with their explicit type arguments', () => {
    const partial = null as unknown as MeshClient<{ commands: { echo: { payload: string; result: string } } }>
    expectTypeOf(partial.command('echo', 'hi')).toEqualTypeOf<Promise<string>>()
    partial.on<number>('count', (payload) => expectTypeOf(payload).toEqualTypeOf<number>())
    partial.on('anything', (payload) => expectTypeOf(payload).toEqualTypeOf<unknown>())
    expectTypeOf(partial.subscribe<string>('any', () => {})).toEqualTypeOf<Promise<SubscribeResult<string>>>()
    partial.send('anything', 1)
  })
})
