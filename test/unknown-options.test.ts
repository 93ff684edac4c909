import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { MeshClient } from 'meshkit/client'
import { Dispatcher, MeshServer, type MeshServerOptions } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'

/** The TypeError thrown by `create`, so that its message can be checked for the key's name. */
function thrown(create: () => unknown): Error {
  try {
    create()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a throw')
}

describe('unknown option keys', () => {
  it('a misspelt server option throws a TypeError naming it', () => {
    const error = thrown(() => new MeshServer({ port: 0, pingInteval: 10 } as MeshServerOptions))
    expect(error).toBeInstanceOf(TypeError)
    // The key's name is the point of the message: it is what the user must fix.
    expect(error.message).toContain('pingInteval')
  })

  it('misspelt nested options (authentication, sync) throw naming the full key', () => {
    const auth = thrown(() => new MeshServer({ port: 0, authentication: { requried: true } } as MeshServerOptions))
    expect(auth).toBeInstanceOf(TypeError)
    expect(auth.message).toContain('authentication.requried')
    const sync = thrown(() => new MeshServer({ port: 0, sync: { enabld: true } } as MeshServerOptions))
    expect(sync).toBeInstanceOf(TypeError)
    expect(sync.message).toContain('sync.enabld')
  })

  it('a misspelt client option throws naming it', () => {
    const error = thrown(() => new MeshClient('ws://127.0.0.1:1', { reconectInterval: 5 } as never))
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toContain('reconectInterval')
  })

  it('a misspelt Dispatcher option (and sync option) throws naming it', () => {
    const error = thrown(() => new Dispatcher('redis://127.0.0.1:1', { namespce: 'x' } as never))
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toContain('namespce')
    const sync = thrown(() => new Dispatcher('redis://127.0.0.1:1', { sync: { maxMesages: 3 } } as never))
    expect(sync).toBeInstanceOf(TypeError)
    expect(sync.message).toContain('sync.maxMesages')
  })

  it('ioredis options inside redis / redisOptions are left to ioredis', async () => {
    const { hostname, port } = new URL(inject('redisUrl'))
    for (const key of ['redis', 'redisOptions'] as const) {
      const server = new MeshServer({ port: 0, host: '127.0.0.1', namespace: uniqueNamespace('options'), [key]: { host: hostname, port: Number(port), connectionName: 'meshkit-options-test', keepAlive: 1000 } })
      onTestFinished(() => server.close())
      await server.ready()
    }
  })
})
