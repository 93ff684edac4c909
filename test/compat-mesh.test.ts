import { ErrorCode, type MeshError } from 'meshkit'
import { MeshClient as CoreClient } from 'meshkit/client'
import { MeshClient } from 'meshkit/mesh/client'
import { MeshServer } from 'meshkit/mesh/server'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { childInstance } from './support/child-instance.js'
import { uniqueNamespace } from './support/cluster.js'
import { deferred } from './support/harness.js'

const FIXTURE = 'test/fixtures/mesh-readme-server.ts'

function meshClient(url: string, options: ConstructorParameters<typeof MeshClient>[1] = {}): MeshClient {
  const client = new MeshClient(url, options)
  onTestFinished(() => client.close())
  return client
}

describe('meshkit/mesh', () => {
  it("runs the Mesh README's quickstart on two instances with only the imports changed", async () => {
    const env = { REDIS_URL: inject('redisUrl'), NAMESPACE: uniqueNamespace('mesh-readme'), LATENCY_INTERVAL: '100' }
    const [a, b] = await Promise.all([childInstance(env, FIXTURE), childInstance(env, FIXTURE)])
    const other = meshClient(`ws://127.0.0.1:${b.port}`)
    await other.connect()
    const joinedOnB = deferred<{ id: string; roomName: string }>()
    other.on<{ id: string; roomName: string }>('user-joined', (event) => {
      if (event.detail.id !== other.id) joinedOnB.resolve(event.detail)
    })
    await other.command('join-room', { roomName: 'lobby' })
    const announced = deferred<unknown>()
    other.on('announcement', (event) => announced.resolve(event.detail))

    const latencies: number[] = []
    const seenLatency = deferred()
    // The README's client, as it stands (console.log replaced by what the test checks).
    const client = new MeshClient(`ws://127.0.0.1:${a.port}`);
    onTestFinished(() => client.close())
    await client.connect();
    {
      const response = await client.command("echo", "Hello, world!");
      expect(response).toBe('echo: Hello, world!')
    }
    {
      const response = client.commandSync("echo", "Hello, world!");
      expect(response).toBe('echo: Hello, world!')
    }
    {
      const response = await client.command("this-command-throws");
      expect(response).toEqual({ error: 'Something went wrong', code: ErrorCode.INTERNAL_ERROR })
    }
    {
      const response = await client.command("join-room", { roomName: "lobby" });
      expect(response).toEqual({ success: true })
    }
    client.on<{ latency: number }>("latency", (event) => {
      latencies.push(event.detail.latency)
      seenLatency.resolve()
    });
    await seenLatency.promise
    expect(typeof latencies[0]).toBe('number')

    // The join on instance A reached the member connected to instance B.
    expect(await joinedOnB.promise).toEqual({ roomName: 'lobby', id: client.id })
    expect(await client.command('broadcast', { text: 'hi' })).toEqual({ sent: true })
    expect(await announced.promise).toEqual({ text: 'hi' })
    await client.close();
  })

  it("reports the README's latency listener on meshkit's own client instead of crashing, and feeds it on the facade", async () => {
    const server = new MeshServer({ host: '127.0.0.1', port: 0, latencyInterval: 50 })
    onTestFinished(() => server.close())
    await server.ready()
    const url = `ws://127.0.0.1:${server.port}`
    // What happened before: meshkit passes the number, so `event.detail.latency` throws.
    const core = new CoreClient(url)
    onTestFinished(() => core.close())
    const failure = deferred<MeshError>()
    core.on('error', (error) => failure.resolve(error))
    core.on('latency', (event: unknown) => void (event as { detail: { latency: number } }).detail.latency)
    await core.connect()
    expect((await failure.promise).code).toBe(ErrorCode.LISTENER_ERROR)

    const client = meshClient(url)
    const latency = deferred<number>()
    client.on<{ latency: number }>('latency', (event) => latency.resolve(event.detail.latency))
    await client.connect()
    expect(await latency.promise).toBeGreaterThanOrEqual(0)
  })

  it('resolves errors the server answered with, and rejects timeouts and lost connections, as Mesh did', async () => {
    const server = new MeshServer({ host: '127.0.0.1', port: 0 })
    onTestFinished(() => server.close())
    server.addMiddleware((ctx) => {
      if (ctx.command === 'guarded') throw new Error('Unauthorized')
    })
    server.registerCommand('guarded', () => 'never')
    server.registerCommand('slow', () => new Promise(() => undefined))
    await server.ready()
    const client = meshClient(`ws://127.0.0.1:${server.port}`)
    await client.connect()
    expect(await client.command('guarded')).toEqual({ error: 'Unauthorized', code: ErrorCode.INTERNAL_ERROR })
    expect(await client.command('missing')).toMatchObject({ code: ErrorCode.NOT_FOUND })
    const timeout = await client.command('slow', undefined, 50).then(
      () => undefined,
      (error: MeshError) => error,
    )
    expect(timeout?.code).toBe(ErrorCode.TIMEOUT)
  })

  it('keeps thrown messages hidden when exposeErrors is turned off', async () => {
    const server = new MeshServer({ host: '127.0.0.1', port: 0, exposeErrors: false })
    onTestFinished(() => server.close())
    server.registerCommand('throws', () => {
      throw new Error('secret')
    })
    await server.ready()
    const client = meshClient(`ws://127.0.0.1:${server.port}`)
    await client.connect()
    const reply = (await client.command('throws')) as { error: string; code: string }
    expect(reply.code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(reply.error).not.toBe('secret')
  })

  it('maps reconnectInterval and maxReconnectAttempts: gives up after that many attempts, none waiting longer than the interval', async () => {
    const server = new MeshServer({ host: '127.0.0.1', port: 0 })
    await server.ready()
    const client = meshClient(`ws://127.0.0.1:${server.port}`, { reconnectInterval: 100, maxReconnectAttempts: 3 })
    await client.connect()
    const failed = deferred<{ attempts: number }>()
    client.on<{ attempts: number }>('reconnectfailed', (event) => failed.resolve(event.detail))
    const started = Date.now()
    await server.close()
    expect((await failed.promise).attempts).toBe(3)
    // Uncapped, meshkit's backoff would allow up to 100 + 200 + 400 ms of waiting.
    expect(Date.now() - started).toBeLessThan(3 * 100 + 250)
  })
})
