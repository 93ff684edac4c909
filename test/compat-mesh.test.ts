import { ErrorCode, type MeshError } from 'meshkit'
import { MeshClient as CoreClient } from 'meshkit/client'
import { MeshClient } from 'meshkit/mesh/client'
import { MeshServer, type MeshServerOptions } from 'meshkit/mesh/server'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { codecByName } from '../src/shared/codec.js'
import { FrameType } from '../src/shared/protocol.js'
import { childInstance } from './support/child-instance.js'
import { uniqueNamespace } from './support/cluster.js'
import { fakeServer } from './support/fake-server.js'
import { deferred } from './support/harness.js'

const FIXTURE = 'test/fixtures/mesh-readme-server.ts'

function meshClient(url: string, options: ConstructorParameters<typeof MeshClient>[1] = {}): MeshClient {
  const client = new MeshClient(url, options)
  onTestFinished(() => client.close())
  return client
}

/** A facade server on a free port, closed when the test ends. */
async function meshServer(options: MeshServerOptions = {}, configure?: (server: MeshServer) => void): Promise<MeshServer> {
  const server = new MeshServer({ host: '127.0.0.1', port: 0, ...options })
  onTestFinished(() => server.close())
  configure?.(server)
  await server.ready()
  return server
}

/** Two facade instances sharing the run's Redis, configured as Mesh's README does it: `redisOptions`. */
async function twoInstances(configure: (server: MeshServer) => void): Promise<[MeshServer, MeshServer]> {
  const redis = new URL(inject('redisUrl'))
  const options = { namespace: uniqueNamespace('mesh-facade'), redisOptions: { host: redis.hostname, port: Number(redis.port) } }
  return [await meshServer(options, configure), await meshServer(options, configure)]
}

async function connected(server: MeshServer, options: ConstructorParameters<typeof MeshClient>[1] = {}): Promise<MeshClient> {
  const client = meshClient(`ws://127.0.0.1:${server.port}`, options)
  await client.connect()
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

  it('registers a listener given to on() twice once, so one off() leaves nothing behind', async () => {
    const server = await meshServer()
    server.registerCommand('notify', async (ctx) => {
      ctx.connection.send('note', 1)
      ctx.connection.send('fence', 2)
      return true
    })
    const client = await connected(server)
    const notes: unknown[] = []
    const listener = (event: { detail: unknown }) => notes.push(event.detail)
    client.on('note', listener)
    client.on('note', listener)
    client.off('note', listener)
    const fence = deferred()
    client.once('fence', () => fence.resolve())
    await client.command('notify')
    await fence.promise
    expect(notes).toEqual([])
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

  it('maps pingTimeout and maxMissedPings: a server that stops pinging is left after (maxMissedPings + 1) timeouts', async () => {
    const url = await fakeServer((socket) => {
      // A hello announcing a short ping gap, then silence.
      socket.send(codecByName('msgpack').encode([FrameType.HELLO, 1, 'fake', { maxPayload: 1 << 20, pingInterval: 10 }]))
    })
    const client = meshClient(url, { pingTimeout: 60, maxMissedPings: 2, shouldReconnect: false })
    const dropped = deferred<{ code: number }>()
    client.on<{ code: number }>('disconnect', (event) => dropped.resolve(event.detail))
    await client.connect()
    const started = Date.now()
    expect((await dropped.promise).code).toBe(4000)
    // Three timeouts of 60 ms (the third one is the one too many), not one.
    expect(Date.now() - started).toBeGreaterThanOrEqual(170)
  })

  it('maps shouldReconnect: false leaves a dropped connection closed', async () => {
    const server = await meshServer()
    const client = await connected(server, { shouldReconnect: false })
    const closed = deferred()
    client.on('close', () => closed.resolve())
    const reconnected: unknown[] = []
    client.on('reconnect', (event) => reconnected.push(event.detail))
    for (const connection of server.connections.values()) connection.close(1012)
    await closed.promise
    expect(client.state).toBe('closed')
    expect(reconnected).toEqual([])
  })

  it("runs the README's channel example across two instances: guarded channels, history newest first", async () => {
    const isPremiumUser = async (conn: { id: string }) => conn.id.length < 0
    const [a, b] = await twoInstances((server) => {
      server.exposeChannel("notifications:global");
      server.exposeChannel(/^chat:.+$/);
      server.exposeChannel(/^private:chat:.+$/, async (conn, channel) => {
        const valid = await isPremiumUser(conn);
        return valid;
      });
    })
    await a.publishToChannel("chat:room1", JSON.stringify({ type: "user-message", user: "1", text: "Hi" }), 50);
    await a.publishToChannel("chat:room1", "msg2", 50)
    await a.publishToChannel("chat:room1", "msg3", 50)
    const client = await connected(b)
    const live = deferred<unknown>()
    const { success, history } = await client.subscribe(
      "chat:room1",
      (message) => {
        live.resolve(message)
      },
      { historyLimit: 3 }
    );
    expect(success).toBe(true)
    expect(history).toEqual(['msg3', 'msg2', JSON.stringify({ type: 'user-message', user: '1', text: 'Hi' })])
    await a.publishToChannel("notifications:global", JSON.stringify({ alert: "Red alert!" }));
    await a.publishToChannel('chat:room1', 'live')
    expect(await live.promise).toBe('live')
    expect((await client.subscribe('private:chat:1', () => undefined)).success).toBe(false)
    expect(await client.unsubscribe("chat:room1")).toBe(true)
  })

  it("runs the README's metadata and middleware examples", async () => {
    const encode = (claims: object) => Buffer.from(JSON.stringify(claims)).toString('base64url')
    const validateProfileUpdate = async (ctx: { payload: { name?: unknown; email?: unknown } }) => {
      const { name, email } = ctx.payload;
      if (typeof name !== 'string' || name.length === 0) {
        throw new Error("Invalid name");
      }
      if (typeof email !== 'string' || !email.includes('@')) {
        throw new Error("Invalid email");
      }
    };
    const seenCommands: string[] = []
    const [a, b] = await twoInstances((server) => {
      server.addMiddleware(async (ctx) => {
        seenCommands.push(ctx.command)
      });
      server.addMiddleware(async (ctx) => {
        if (ctx.command === 'authenticate') return
        const metadata = (await server.connectionManager.getMetadata(ctx.connection)) as { userId?: string } | null;
        if (!metadata?.userId) {
          throw new Error("Unauthorized");
        }
        ctx.user = { id: metadata.userId };
      });
      server.registerCommand("authenticate", async (ctx) => {
        const { userId } = ctx.payload;
        const token = encode({ sub: userId, iat: Date.now(), exp: Date.now() + 3600 });
        await server.connectionManager.setMetadata(ctx.connection, { userId, token });
        return { success: true };
      });
      server.registerCommand("update-profile", async (ctx) => ({ success: true, by: (ctx.user as { id: string }).id }), [validateProfileUpdate]);
    })
    const client = await connected(a)
    expect(await client.command('update-profile', { name: 'Ann', email: 'ann@example.com' })).toEqual({ error: 'Unauthorized', code: ErrorCode.INTERNAL_ERROR })
    expect(await client.command('authenticate', { userId: 'u1' })).toEqual({ success: true })
    expect(await client.command('update-profile', { name: '', email: 'x' })).toEqual({ error: 'Invalid name', code: ErrorCode.INTERNAL_ERROR })
    expect(await client.command('update-profile', { name: 'Ann', email: 'ann@example.com' })).toEqual({ success: true, by: 'u1' })
    expect(seenCommands).toEqual(['update-profile', 'authenticate', 'update-profile', 'update-profile'])
    // Metadata is readable from the other instance, by connection id.
    const metadata = (await b.connectionManager.getMetadata(client.id!)) as { userId: string; token: string }
    expect(metadata.userId).toBe('u1')
    expect(await b.connectionManager.getAllMetadata()).toEqual([{ [client.id!]: metadata }])
  })

  it('maps reconnectInterval and maxReconnectAttempts: that many attempts, none waiting longer than the interval', async () => {
    const server = await meshServer()
    const client = await connected(server, { reconnectInterval: 50, maxReconnectAttempts: 6 })
    const failures: number[] = []
    client.on('error', () => failures.push(Date.now()))
    const failed = deferred<{ attempts: number }>()
    client.on<{ attempts: number }>('reconnectfailed', (event) => failed.resolve(event.detail))
    const dropped = deferred<number>()
    client.on('disconnect', () => dropped.resolve(Date.now()))
    await server.close()
    expect((await failed.promise).attempts).toBe(6)
    const times = [await dropped.promise, ...failures]
    const gaps = times.slice(1).map((time, i) => time - times[i]!)
    expect(gaps).toHaveLength(6)
    // Uncapped, meshkit's backoff would let attempt n wait up to 50 * 2^(n-1) ms (1.6 s for the sixth).
    expect(Math.max(...gaps)).toBeLessThan(50 + 100)
  })
})
