import { describe, expectTypeOf, it } from 'vitest'
import * as v from 'valibot'
import { z } from 'zod'
import { defineApi, unchecked } from 'meshkit'
import { Dispatcher, MeshServer, type Connection, type MeshContext, type MessageContext, type Middleware } from 'meshkit/server'

interface User {
  id: string
}

interface ChatApi {
  commands: { echo: { payload: string; result: string }; ping: { result: 'pong' } }
  events: { welcome: { id: string }; bye: undefined }
  messages: { typing: { room: string } }
  channels: { [channel: `chat:${string}`]: { text: string } }
}

const api = defineApi({
  commands: {
    add: { payload: v.object({ a: v.number(), b: v.pipe(v.string(), v.transform(Number)) }), result: z.number() },
  },
  events: { notice: unchecked<{ text: string }>() },
  messages: { typing: z.object({ room: z.string().default('lobby') }) },
  channels: { 'news:*': z.object({ headline: z.string() }) },
})

declare const chat: MeshServer<ChatApi>
declare const connection: Connection<ChatApi>
const auth: Middleware<{ user: User }> = (ctx) => {
  ctx.user = { id: String(ctx.payload) }
}
const tenant: Middleware<{ tenant: string }> = (ctx) => {
  ctx.tenant = 't1'
}

describe('MeshServer<Api> with an API type', () => {
  it('types ctx.payload and checks the result', () => {
    chat.registerCommand('echo', (ctx) => {
      expectTypeOf(ctx.payload).toEqualTypeOf<string>()
      expectTypeOf(ctx).toExtend<MeshContext<string, ChatApi>>()
      return ctx.payload
    })
    chat.registerCommand('ping', async () => 'pong' as const)
    // @ts-expect-error the result of echo is a string
    chat.registerCommand('echo', (ctx) => ctx.payload.length)
    // @ts-expect-error ping resolves 'pong'
    chat.registerCommand('ping', async () => 'pang')
    // @ts-expect-error an unknown command name
    chat.registerCommand('ecko', (ctx) => ctx.payload)
    // @ts-expect-error a typed commands section has no explicit <P, R> signature
    chat.registerCommand<number, number>('echo', (ctx) => ctx.payload)
  })

  it('has no index signature: a mistyped field fails to compile', () => {
    chat.registerCommand('echo', (ctx) => {
      // @ts-expect-error no such field
      void ctx.somethingMistyped
      return ctx.payload
    })
    chat.addMiddleware((ctx) => {
      // @ts-expect-error middleware cannot add an undeclared field either
      ctx.user = { id: 'x' }
    })
    chat.onMessage('typing', (ctx) => {
      // @ts-expect-error no such field
      void ctx.somethingMistyped
    })
  })

  it('types client messages: data, names, and * for every type', () => {
    chat.onMessage('typing', (ctx) => {
      expectTypeOf(ctx.data).toEqualTypeOf<{ room: string }>()
      expectTypeOf(ctx).toExtend<MessageContext<{ room: string }, ChatApi>>()
    })
    chat.onMessage('*', (ctx) => {
      expectTypeOf(ctx.data).toEqualTypeOf<unknown>()
    })
    // @ts-expect-error an unknown message type
    chat.onMessage('typo', () => undefined)
  })

  it('checks event names and payloads in every send', () => {
    void chat.broadcast('welcome', { id: 'a' })
    void chat.broadcast('bye')
    void chat.broadcastExclude('welcome', { id: 'a' }, connection)
    void chat.broadcastRoom('lobby', 'welcome', { id: 'a' })
    void chat.broadcastRoomExclude('lobby', 'bye', undefined, [connection])
    void chat.sendTo(connection, 'welcome', { id: 'a' })
    void chat.send('welcome', { id: 'a' }, ['u1'])
    connection.send('welcome', { id: 'a' })
    // @ts-expect-error an unknown event
    void chat.broadcast('welcom', { id: 'a' })
    // @ts-expect-error a wrong payload
    void chat.broadcast('welcome', { id: 1 })
    // @ts-expect-error welcome needs its payload
    void chat.broadcast('welcome')
    // @ts-expect-error a wrong payload
    void chat.broadcastExclude('welcome', {}, connection)
    // @ts-expect-error an unknown event
    void chat.broadcastRoom('lobby', 'hello', { id: 'a' })
    // @ts-expect-error a wrong payload
    void chat.broadcastRoomExclude('lobby', 'welcome', 'a', connection)
    // @ts-expect-error an unknown event
    void chat.sendTo(connection, 'hello')
    // @ts-expect-error a wrong payload
    void chat.send('welcome', 'a', ['u1'])
    // @ts-expect-error an unknown event
    connection.send('hello', 1)
    // @ts-expect-error a wrong payload
    connection.send('welcome', { id: 2 })
  })

  it('checks channel names and messages in writeChannel', () => {
    void chat.writeChannel('chat:general', { text: 'hi' }, 10)
    // @ts-expect-error not a declared channel
    void chat.writeChannel('news:general', { text: 'hi' })
    // @ts-expect-error a wrong message
    void chat.writeChannel('chat:general', { body: 'hi' })
  })

  it('hands contexts the typed connection and server', () => {
    chat.registerCommand('echo', (ctx) => {
      expectTypeOf(ctx.connection).toEqualTypeOf<Connection<ChatApi>>()
      expectTypeOf(ctx.server).toEqualTypeOf<MeshServer<ChatApi>>()
      // A typed connection and server still go wherever untyped ones are taken.
      void chat.addToRoom('lobby', ctx.connection)
      const untyped: MeshServer = ctx.server
      void untyped
      return ctx.payload
    })
  })
})

describe('MeshServer with an object of schemas', () => {
  const server = new MeshServer({ api, port: 0 })

  it('infers Api from options.api', () => {
    expectTypeOf(server).toEqualTypeOf<MeshServer<typeof api>>()
  })

  it("gives handlers the schema's output and checks the result", () => {
    server.registerCommand('add', (ctx) => {
      expectTypeOf(ctx.payload).toEqualTypeOf<{ a: number; b: number }>()
      return ctx.payload.a + ctx.payload.b
    })
    // @ts-expect-error the result is a number
    server.registerCommand('add', (ctx) => String(ctx.payload.a))
    // @ts-expect-error an unknown command
    server.registerCommand('sub', () => 0)
    server.onMessage('typing', (ctx) => {
      expectTypeOf(ctx.data).toEqualTypeOf<{ room: string }>()
    })
  })

  it('checks events and channels', () => {
    void server.broadcast('notice', { text: 'hi' })
    void server.writeChannel('news:sport', { headline: 'h' })
    // @ts-expect-error a wrong payload
    void server.broadcast('notice', { text: 1 })
    // @ts-expect-error not a declared channel
    void server.writeChannel('chat:general', { headline: 'h' })
  })
})

describe('typed middleware fields', () => {
  it("reach the handler from the command's own middleware", () => {
    chat.registerCommand(
      'echo',
      (ctx) => {
        expectTypeOf(ctx.user).toEqualTypeOf<User>()
        expectTypeOf(ctx.tenant).toEqualTypeOf<string>()
        return ctx.user.id
      },
      [auth, tenant],
    )
    chat.registerCommand('echo', (ctx) => {
      // @ts-expect-error without the middleware there is no user
      void ctx.user
      return ctx.payload
    })
  })

  it("reach the handlers of the server addMiddleware returns, and later middleware sees them as optional", () => {
    const app = chat.addMiddleware(auth)
    expectTypeOf(app).toEqualTypeOf<MeshServer<ChatApi, { user: User }>>()
    app.registerCommand('echo', (ctx) => ctx.user.id)
    app.onMessage('typing', (ctx) => {
      expectTypeOf(ctx.user).toEqualTypeOf<User>()
    })
    const both = app.addMiddleware((ctx) => {
      expectTypeOf(ctx.user).toEqualTypeOf<User | undefined>()
    }, tenant)
    both.registerCommand('echo', (ctx) => `${ctx.user.id}@${ctx.tenant}`)
    // @ts-expect-error middleware whose fields clash with the server's
    app.addMiddleware(((ctx) => void ctx) as Middleware<{ user: number }>)
  })

  it('work on an untyped server too', () => {
    const server = new MeshServer()
    server.registerCommand('whoami', (ctx) => ctx.user.id, [auth])
    server.addMiddleware(auth).registerCommand('whoami', (ctx) => ctx.user.id)
  })
})

describe('an untyped server, as before', () => {
  const server = new MeshServer({ port: 0 })

  it('types payloads and data as unknown, not any', () => {
    expectTypeOf(server).toEqualTypeOf<MeshServer>()
    server.registerCommand('anything', (ctx) => {
      expectTypeOf(ctx.payload).toEqualTypeOf<unknown>()
      // @ts-expect-error no index signature here either
      void ctx.user
      return 1
    })
    server.onMessage('anything', (ctx) => {
      expectTypeOf(ctx.data).toEqualTypeOf<unknown>()
    })
  })

  it('keeps registerCommand<P, R> and onMessage<D>', () => {
    server.registerCommand<{ a: number }, number>('double', (ctx) => {
      expectTypeOf(ctx.payload).toEqualTypeOf<{ a: number }>()
      return ctx.payload.a * 2
    })
    // @ts-expect-error R is number
    server.registerCommand<{ a: number }, number>('double', (ctx) => String(ctx.payload.a))
    server.onMessage<{ room: string }>('typing', (ctx) => {
      expectTypeOf(ctx.data).toEqualTypeOf<{ room: string }>()
    })
  })

  it('sends any event, payload and channel message', () => {
    void server.broadcast('anything', { x: 1 })
    void server.broadcast('anything')
    void server.sendTo('id', 'anything', 1)
    void server.send('anything', 1, ['u1'])
    void server.writeChannel('any', 1)
  })
})

describe('Dispatcher<Api>', () => {
  it('checks events and channels as the server does', () => {
    const dispatcher = new Dispatcher<ChatApi>({ host: '127.0.0.1' })
    void dispatcher.broadcastRoom('lobby', 'welcome', { id: 'a' }, ['c1'])
    void dispatcher.broadcastRoom('lobby', 'bye')
    void dispatcher.sendTo(['c1'], 'welcome', { id: 'a' })
    void dispatcher.dispatch('welcome', { id: 'a' }, ['*'])
    void dispatcher.writeChannel('chat:general', { text: 'hi' })
    // @ts-expect-error an unknown event
    void dispatcher.broadcastRoom('lobby', 'hello', 1)
    // @ts-expect-error welcome needs its payload
    void dispatcher.broadcastRoom('lobby', 'welcome')
    // @ts-expect-error a wrong payload
    void dispatcher.sendTo(['c1'], 'welcome', { id: 1 })
    // @ts-expect-error a wrong payload
    void dispatcher.dispatch('welcome', 'a', ['*'])
    // @ts-expect-error a wrong message
    void dispatcher.writeChannel('chat:general', 'hi')
    const untyped = new Dispatcher({ host: '127.0.0.1' })
    void untyped.broadcastRoom('lobby', 'anything', { x: 1 })
  })
})
