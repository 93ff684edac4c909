import { describe, expectTypeOf, it } from 'vitest'
import * as v from 'valibot'
import { z } from 'zod'
import {
  defineApi,
  unchecked,
  type ChannelMessage,
  type ChannelName,
  type CommandArgs,
  type CommandInput,
  type CommandName,
  type CommandPayload,
  type CommandResult,
  type EventArgs,
  type IfUntyped,
  type MessageData,
  type MessageInput,
} from '../../src/shared/api.js'

interface ChatApi {
  commands: { echo: { payload: string; result: string }; ping: { result: 'pong' }; maybe: { payload?: number } }
  events: { welcome: { id: string }; bye: undefined }
  channels: { [channel: `chat:${string}`]: { text: string } }
}

const api = defineApi({
  commands: {
    add: { payload: v.object({ a: v.number(), b: v.pipe(v.string(), v.transform(Number)) }), result: z.number() },
  },
  messages: { typing: z.object({ room: z.string() }) },
  channels: { 'news:*:daily': unchecked<{ headline: string }>() },
})
type SchemaApi = typeof api

describe('API type helpers', () => {
  it('commands: names, payloads (optional when undefined fits), results', () => {
    expectTypeOf<CommandName<ChatApi>>().toEqualTypeOf<'echo' | 'ping' | 'maybe'>()
    expectTypeOf<CommandArgs<ChatApi, 'echo'>>().toEqualTypeOf<[payload: string, timeout?: number]>()
    expectTypeOf<CommandArgs<ChatApi, 'ping'>>().toEqualTypeOf<[payload?: undefined, timeout?: number]>()
    expectTypeOf<CommandPayload<ChatApi, 'maybe'>>().toEqualTypeOf<number | undefined>()
    expectTypeOf<CommandResult<ChatApi, 'ping'>>().toEqualTypeOf<'pong'>()
    expectTypeOf<CommandResult<ChatApi, 'maybe'>>().toEqualTypeOf<unknown>()
  })

  it('schemas: the client sends the input, the handler gets the output', () => {
    expectTypeOf<CommandPayload<SchemaApi, 'add'>>().toEqualTypeOf<{ a: number; b: string }>()
    expectTypeOf<CommandInput<SchemaApi, 'add'>>().toEqualTypeOf<{ a: number; b: number }>()
    expectTypeOf<CommandResult<SchemaApi, 'add'>>().toEqualTypeOf<number>()
    expectTypeOf<MessageData<SchemaApi, 'typing'>>().toEqualTypeOf<{ room: string }>()
    expectTypeOf<MessageInput<SchemaApi, 'typing'>>().toEqualTypeOf<{ room: string }>()
  })

  it('channel names: template literal keys and * patterns', () => {
    expectTypeOf<ChannelMessage<ChatApi, 'chat:general'>>().toEqualTypeOf<{ text: string }>()
    expectTypeOf<'chat:general'>().toExtend<ChannelName<ChatApi>>()
    expectTypeOf<'news:sport:daily'>().toExtend<ChannelName<SchemaApi>>()
    expectTypeOf<'news:sport'>().not.toExtend<ChannelName<SchemaApi>>()
    expectTypeOf<ChannelMessage<SchemaApi, 'news:sport:daily'>>().toEqualTypeOf<{ headline: string }>()
  })

  it('a section left out is untyped: any name, unknown values', () => {
    expectTypeOf<CommandName<{ events: { a: string } }>>().toEqualTypeOf<string>()
    expectTypeOf<CommandArgs<{}, 'anything'>>().toEqualTypeOf<[payload?: unknown, timeout?: number]>()
    expectTypeOf<EventArgs<ChatApi, 'bye'>>().toEqualTypeOf<[payload?: undefined]>()
    expectTypeOf<ChannelName<{}>>().toEqualTypeOf<string>()
    expectTypeOf<IfUntyped<{}, 'commands'>>().toEqualTypeOf<unknown>()
    expectTypeOf<IfUntyped<ChatApi, 'commands'>>().toEqualTypeOf<never>()
    expectTypeOf<IfUntyped<ChatApi, 'messages'>>().toEqualTypeOf<unknown>()
  })
})
