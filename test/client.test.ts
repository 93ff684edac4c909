import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import { MeshClient } from 'meshkit/client'
import type { Connection } from 'meshkit/server'
import { codecByName } from '../src/shared/codec.js'
import { FrameType } from '../src/shared/protocol.js'
import { fakeServer } from './support/fake-server.js'
import { connectClient, createClient, deferred, nextEvent, rejectionOf, startServer, urlOf } from './support/harness.js'

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return (await rejectionOf(promise)).code
}

describe('client', () => {
  it('knows its connection id from the hello, the same the server sees', async () => {
    const server = await startServer()
    const seen = deferred<Connection>()
    server.onConnection((connection) => seen.resolve(connection))
    const client = await connectClient(server)
    expect(client.state).toBe('open')
    expect(client.id).toBe((await seen.promise).id)
  })

  it('rejects with TIMEOUT when no reply arrives in time, per call or by default', async () => {
    const server = await startServer()
    server.registerCommand('never', () => new Promise(() => {}))
    const client = await connectClient(server, { commandTimeout: 80 })
    expect(await codeOf(client.command('never', null, 30))).toBe(ErrorCode.TIMEOUT)
    expect(await codeOf(client.command('never'))).toBe(ErrorCode.TIMEOUT)
  })

  it('times out a short request made after a long one, and still answers the long one', async () => {
    const server = await startServer()
    const release = deferred()
    server.registerCommand('held', async () => {
      await release.promise
      return 'held'
    })
    server.registerCommand('never', () => new Promise(() => {}))
    const client = await connectClient(server)
    const long = client.command('held', null, 60_000)
    expect(await codeOf(client.command('never', null, 30))).toBe(ErrorCode.TIMEOUT)
    release.resolve()
    expect(await long).toBe('held')
  })

  it('a process whose client answered its commands and closed exits by itself', async () => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ctx.payload)
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/client-exits.ts'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { ...process.env, URL: urlOf(server) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    onTestFinished(() => void child.kill('SIGKILL'))
    // Well within the test's timeout, far within the commands' own 30 s and 600 s timeouts.
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(output).toContain('ANSWERED 21')
    expect(code).toBe(0)
  })

  it('drops a reply that arrives after its request timed out', async () => {
    const server = await startServer()
    const release = deferred()
    let slowReplied = false
    server.registerCommand('slow', async () => {
      await release.promise
      slowReplied = true
      return 'late'
    })
    server.registerCommand('echo', (ctx) => ctx.payload)
    const client = await connectClient(server)
    expect(await codeOf(client.command('slow', null, 30))).toBe(ErrorCode.TIMEOUT)
    release.resolve()
    // The late reply is written before this one on the same socket, so it has arrived and been dropped.
    expect(await client.command('echo', 'fresh')).toBe('fresh')
    expect(slowReplied).toBe(true)
  })

  it('never hands a reply to the wrong request, even with ids re-sent by the server', async () => {
    const requests: number[] = []
    const url = await fakeServer((socket) => {
      const codec = codecByName('msgpack')
      socket.send(codec.encode([FrameType.HELLO, 1, 'fake', { maxPayload: 1 << 20, pingInterval: 30_000 }]))
      socket.on('message', (data: Buffer) => {
        const frame = codec.decode(new Uint8Array(data)) as [number, number, string, unknown]
        requests.push(frame[1])
        // Answer the first request twice: the duplicate must not resolve the second one.
        if (frame[2] === 'first') {
          socket.send(codec.encode([FrameType.RESPONSE, frame[1], 'one']))
          socket.send(codec.encode([FrameType.RESPONSE, frame[1], 'duplicate']))
        } else {
          socket.send(codec.encode([FrameType.RESPONSE, frame[1], 'two']))
        }
      })
    })
    const client = await connectClient(url)
    expect(await client.command('first')).toBe('one')
    expect(await client.command('second')).toBe('two')
    expect(new Set(requests).size).toBe(2)
  })

  it('rejects requests in flight with CONNECTION_CLOSED at once when the socket drops', async () => {
    const server = await startServer()
    const started = deferred<Connection>()
    server.registerCommand('hang', (ctx) => {
      started.resolve(ctx.connection)
      return new Promise(() => {})
    })
    const client = await connectClient(server, { commandTimeout: 60_000, shouldReconnect: false })
    const pending = client.command('hang')
    ;(await started.promise).terminate()
    const startedAt = Date.now()
    expect(await codeOf(pending)).toBe(ErrorCode.CONNECTION_CLOSED)
    expect(Date.now() - startedAt).toBeLessThan(5_000)
  })

  it('rejects commands before connect() and after close() with CONNECTION_CLOSED', async () => {
    const server = await startServer()
    const client = createClient(server)
    expect(await codeOf(client.command('echo'))).toBe(ErrorCode.CONNECTION_CLOSED)
    await client.connect()
    await client.close()
    expect(client.state).toBe('closed')
    expect(await codeOf(client.command('echo'))).toBe(ErrorCode.CONNECTION_CLOSED)
  })

  it('rejects a request above the server limit locally with PAYLOAD_TOO_LARGE and stays connected', async () => {
    const server = await startServer({ maxPayload: 1_000 })
    server.registerCommand('echo', (ctx) => ctx.payload)
    for (const codec of ['msgpack', 'json'] as const) {
      const client = await connectClient(server, { codec })
      expect(await codeOf(client.command('echo', 'x'.repeat(2_000)))).toBe(ErrorCode.PAYLOAD_TOO_LARGE)
      expect(await client.command('echo', 'small')).toBe('small')
    }
  })

  it('rejects a payload its codec cannot encode with ENCODE_ERROR', async () => {
    const server = await startServer()
    const client = await connectClient(server, { codec: 'json' })
    expect(await codeOf(client.command('echo', 10n))).toBe(ErrorCode.ENCODE_ERROR)
  })

  it('delivers server events to listeners until they unsubscribe', async () => {
    const server = await startServer()
    server.registerCommand('notify', (ctx) => ctx.connection.send('news', ctx.payload))
    const client = await connectClient(server)
    const received: unknown[] = []
    const off = client.on('news', (payload) => received.push(payload))
    await client.command('notify', 'first')
    off()
    await client.command('notify', 'second')
    expect(received).toEqual(['first'])
  })

  it('fails connect() with CONNECTION_FAILED when nothing listens', async () => {
    const server = await startServer()
    const url = urlOf(server)
    await server.close()
    const client = new MeshClient(url)
    expect(await codeOf(client.connect())).toBe(ErrorCode.CONNECTION_FAILED)
    expect(client.state).toBe('closed')
  })

  it('fails connect() with CONNECTION_FAILED for a URL the WebSocket refuses, and nothing fires later', async () => {
    const client = new MeshClient('not a url', { connectTimeout: 20 })
    expect(await codeOf(client.connect())).toBe(ErrorCode.CONNECTION_FAILED)
    // Outlive the hello timeout: a timer left armed would throw now.
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(client.state).toBe('closed')
  })

  it('refuses a server that speaks another protocol version, without reconnecting', async () => {
    let connections = 0
    const url = await fakeServer((socket) => {
      connections++
      socket.send(codecByName('msgpack').encode([FrameType.HELLO, 99, 'future', { maxPayload: 1, pingInterval: 1 }]))
    })
    const client = new MeshClient(url, { reconnectInterval: 1 })
    const error = await client.connect().catch((thrown: MeshError) => thrown)
    expect((error as MeshError).code).toBe(ErrorCode.VERSION_MISMATCH)
    expect((error as MeshError).data).toEqual({ server: 99, client: 1 })
    expect(connections).toBe(1)
  })

  it('reports an unsolicited server error as an error event', async () => {
    const url = await fakeServer((socket) => {
      const codec = codecByName('msgpack')
      socket.send(codec.encode([FrameType.HELLO, 1, 'fake', { maxPayload: 1 << 20, pingInterval: 30_000 }]))
      socket.send(codec.encode([FrameType.ERROR, 0, ErrorCode.BAD_REQUEST, 'Malformed frame']))
    })
    const client = createClient(url)
    const error = nextEvent<MeshError>(client, 'error')
    await client.connect()
    expect((await error).code).toBe(ErrorCode.BAD_REQUEST)
  })
})
