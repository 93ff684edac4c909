import { once } from 'node:events'
import { WebSocket } from 'ws'
import { MeshError } from 'meshkit'
import { MeshClient, type ClientUrl, type MeshClientOptions, type RecoveryEvent } from 'meshkit/client'
import { expect, onTestFinished } from 'vitest'
import { MeshServer, type Logger, type MeshServerOptions } from 'meshkit/server'
import { codecByName, type Codec } from '../../src/shared/codec.js'
import { FrameType, Subprotocol, type CodecName } from '../../src/shared/protocol.js'

/**
 * A server on a free loopback port, closed when the test ends. `configure` runs
 * before it can accept anyone: a restarted server must know its commands and
 * channels before reconnecting clients arrive.
 */
export async function startServer(options: MeshServerOptions = {}, configure?: (server: MeshServer) => void): Promise<MeshServer> {
  const server = new MeshServer({ host: '127.0.0.1', port: 0, ...options })
  onTestFinished(() => server.close())
  configure?.(server)
  await server.ready()
  return server
}

export function urlOf(server: MeshServer, path = ''): string {
  return `ws://127.0.0.1:${server.port}${path}`
}

/** A connected client, closed when the test ends. */
export async function connectClient(server: MeshServer | ClientUrl, options: MeshClientOptions = {}): Promise<MeshClient> {
  const client = createClient(server, options)
  await client.connect()
  return client
}

export function createClient(server: MeshServer | ClientUrl, options: MeshClientOptions = {}): MeshClient {
  const target = server instanceof MeshServer ? urlOf(server) : server
  const client = new MeshClient(target, options)
  onTestFinished(() => client.close())
  return client
}

/** The next occurrence of a client event (that `accept` takes, if given), or a rejection after `timeout` ms. */
export function nextEvent<T = unknown>(client: MeshClient, event: string, timeout = 5_000, accept: (payload: T) => boolean = () => true): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`no "${event}" event within ${timeout} ms`))
    }, timeout)
    const off = client.on<T>(event, (payload) => {
      if (!accept(payload)) return
      off()
      clearTimeout(timer)
      resolve(payload)
    })
  })
}

/**
 * The `recovery` that settles a channel after a reconnect. A `retrying` one comes
 * first when the client reaches a restarted server before that server's Redis
 * connection is up (it serves at once and joins its store meanwhile).
 */
export function nextSettledRecovery(client: MeshClient, timeout = 10_000): Promise<RecoveryEvent> {
  return nextEvent<RecoveryEvent>(client, 'recovery', timeout, (event) => event.retrying !== true)
}

/** The `MeshError` a promise rejects with; fails the test if it resolves or rejects with anything else. */
export async function rejectionOf(promise: Promise<unknown>): Promise<MeshError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection')
    },
    (thrown: unknown) => thrown,
  )
  expect(error).toBeInstanceOf(MeshError)
  return error as MeshError
}

export interface Deferred<T> {
  promise: Promise<T>
  resolve(value: T): void
  reject(error: unknown): void
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Waits for a condition that has no event of its own, checking on every turn of the event loop. */
export async function waitFor(condition: () => boolean, timeout = 5_000): Promise<void> {
  const deadline = Date.now() + timeout
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/**
 * Retries an async check until it passes: for state that converges (cleanup of a
 * dead instance, recovery after a Redis restart) and has no event of its own.
 */
export async function eventually<T>(check: () => Promise<T>, timeout = 10_000): Promise<T> {
  const deadline = Date.now() + timeout
  for (;;) {
    try {
      return await check()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
}

/**
 * A bare `ws` socket speaking the protocol by hand, for sending what MeshClient
 * never would and for playing a peer that stops answering.
 */
export class RawClient {
  readonly codec: Codec
  readonly closed: Promise<{ code: number; reason: string }>
  private readonly frames: unknown[] = []
  private readonly waiters: Array<(frame: unknown) => void> = []

  private constructor(
    readonly socket: WebSocket,
    codecName: CodecName,
  ) {
    this.codec = codecByName(codecName)
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    })
    socket.on('error', () => {})
    socket.on('message', (data: Buffer, isBinary) => {
      const frame = this.codec.decode(isBinary ? new Uint8Array(data) : data.toString())
      const waiter = this.waiters.shift()
      if (waiter) waiter(frame)
      else this.frames.push(frame)
    })
  }

  static async open(server: MeshServer, codecName: CodecName = 'msgpack', options: { maxPayload?: number; headers?: Record<string, string> } = {}): Promise<RawClient> {
    const socket = new WebSocket(urlOf(server), [Subprotocol[codecName]], options)
    const client = new RawClient(socket, codecName)
    onTestFinished(() => socket.terminate())
    await once(socket, 'open')
    return client
  }

  /** The next frame the server sent. */
  next(timeout = 5_000): Promise<unknown> {
    const queued = this.frames.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no frame within ${timeout} ms`)), timeout)
      this.waiters.push((frame) => {
        clearTimeout(timer)
        resolve(frame)
      })
    })
  }

  /** The next frame of a type, skipping pings and others. */
  async nextOfType(type: number, timeout = 5_000): Promise<unknown[]> {
    for (;;) {
      const frame = (await this.next(timeout)) as unknown[]
      if (frame[0] === type) return frame
    }
  }

  async hello(): Promise<unknown[]> {
    return this.nextOfType(FrameType.HELLO)
  }

  send(frame: unknown): void {
    this.socket.send(this.codec.encode(frame))
  }

  sendRaw(data: Buffer | string, binary = typeof data !== 'string'): void {
    this.socket.send(data, { binary })
  }
}

/** What a logger was told, in order. */
export interface LogEntry {
  level: string
  message: string
  details: Record<string, unknown> | undefined
}

/** A logger that records every call, for tests that check what the server reported. */
export function recordingLogger(): { logger: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = []
  const at = (level: string) => (message: string, details?: Record<string, unknown>) => entries.push({ level, message, details })
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, entries }
}
