import { describe, expectTypeOf, it } from 'vitest'
import { MeshServer, type Middleware } from 'meshkit/server'

interface Session {
  startedAt: number
}

// The global way to type a field middleware adds, as before typed middleware: every
// context of every server gets it. (It merges into the whole type-check, so the field
// is one no other type test uses.)
declare module 'meshkit/server' {
  interface MeshContext {
    session?: Session
  }
}

describe('declaration merging of MeshContext', () => {
  it('types the merged field in middleware and handlers, on untyped and typed servers', () => {
    const server = new MeshServer()
    server.addMiddleware((ctx) => {
      ctx.session = { startedAt: Date.now() }
    })
    server.registerCommand('since', (ctx) => {
      expectTypeOf(ctx.session).toEqualTypeOf<Session | undefined>()
      return ctx.session?.startedAt
    })
    const typed = new MeshServer<{ commands: { since: { result: number } } }>()
    typed.registerCommand('since', (ctx) => ctx.session?.startedAt ?? 0)
    const check: Middleware = (ctx) => {
      // @ts-expect-error the merged field keeps its type
      ctx.session = 'yesterday'
    }
    void check
  })

  it('still rejects fields nobody declared', () => {
    new MeshServer().registerCommand('x', (ctx) => {
      // @ts-expect-error not merged, not added by middleware
      return ctx.sesion
    })
  })
})
