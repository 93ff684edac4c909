// The three targets as the load sees them: each connects with its own client library
// and exposes the same small interface to the workloads.
import { MeshClient } from 'meshkit/client'
import { io } from 'socket.io-client'
import { WebSocket } from 'ws'
import { inBatches } from './support.js'

/** `meshMetrics`: meshkit with `metrics: true`, measured beside `mesh` by bench/metrics-cost.ts only. */
export type TargetKey = 'raw' | 'sio' | 'mesh' | 'meshMetrics'

export interface BenchClient {
  /** A request and its reply (raw ws: { id, cmd, data }; Socket.IO: an acknowledgement; meshkit: a command). */
  call(command: string, data?: unknown): Promise<unknown>
  on(event: string, listener: (data: any) => void): void
  /** A fire-and-forget client message (meshkit only: `client.send`). */
  send?(type: string, data?: unknown): void
  /** Called if the connection drops without close() being called. */
  onDrop(listener: () => void): void
  isOpen(): boolean
  close(): Promise<void>
}

export interface Target {
  readonly key: TargetKey
  readonly label: string
  readonly script: string
  /** Environment of its server process (the server script reads its switches there). */
  readonly env?: Record<string, string>
  connect(port: number): Promise<BenchClient>
}

async function connectRawWs(port: number): Promise<BenchClient> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
  await new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
  })
  let nextId = 0
  let closing = false
  const pending = new Map<number, (data: unknown) => void>()
  const listeners = new Map<string, (data: unknown) => void>()
  socket.on('message', (raw) => {
    const message = JSON.parse(raw.toString()) as { id?: number; event?: string; data: unknown }
    if (message.event !== undefined) return listeners.get(message.event)?.(message.data)
    pending.get(message.id!)?.(message.data)
    pending.delete(message.id!)
  })
  return {
    call: (cmd, data) =>
      new Promise((resolve) => {
        const id = ++nextId
        pending.set(id, resolve)
        socket.send(JSON.stringify({ id, cmd, data }))
      }),
    on: (event, listener) => void listeners.set(event, listener),
    onDrop: (listener) => void socket.on('close', () => closing || listener()),
    isOpen: () => socket.readyState === WebSocket.OPEN,
    close: () => {
      closing = true
      // Already closed (the server dropped it): no 'close' event is coming.
      if (socket.readyState === WebSocket.CLOSED) return Promise.resolve()
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.close()
      const timer = setTimeout(() => socket.terminate(), 2_000)
      return closed.finally(() => clearTimeout(timer))
    },
  }
}

async function connectSocketIo(port: number): Promise<BenchClient> {
  const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true })
  await new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(undefined))
    socket.once('connect_error', reject)
  })
  let closing = false
  return {
    call: (cmd, data) => socket.emitWithAck(cmd, data),
    on: (event, listener) => void socket.on(event, listener),
    onDrop: (listener) => void socket.on('disconnect', () => closing || listener()),
    isOpen: () => socket.connected,
    close: async () => {
      closing = true
      socket.disconnect()
    },
  }
}

async function connectMeshkit(port: number): Promise<BenchClient> {
  // A generous connectTimeout: tens of thousands of clients connecting on two busy cores can wait long for their hello.
  const client = new MeshClient(`ws://127.0.0.1:${port}`, { shouldReconnect: false, connectTimeout: 30_000 })
  await client.connect()
  let closing = false
  return {
    call: (cmd, data) => client.command(cmd, data),
    send: (type, data) => client.send(type, data),
    on: (event, listener) => void client.on(event, listener),
    onDrop: (listener) => void client.on('disconnect', () => closing || listener()),
    isOpen: () => client.state === 'open',
    close: () => {
      closing = true
      return client.close()
    },
  }
}

export const targets: Record<TargetKey, Target> = {
  raw: { key: 'raw', label: 'raw ws', script: 'raw-ws.ts', connect: connectRawWs },
  sio: { key: 'sio', label: 'Socket.IO', script: 'socket-io.ts', connect: connectSocketIo },
  mesh: { key: 'mesh', label: 'meshkit', script: 'meshkit.ts', connect: connectMeshkit },
  meshMetrics: { key: 'meshMetrics', label: 'meshkit, metrics on', script: 'meshkit.ts', env: { BENCH_METRICS: '1' }, connect: connectMeshkit },
}

/** Opens `count` clients, `concurrency` handshakes at a time. */
export async function connectMany(target: Target, port: number, count: number, concurrency = 100): Promise<BenchClient[]> {
  return inBatches(count, concurrency, () => target.connect(port))
}

export async function closeAll(clients: readonly BenchClient[]): Promise<void> {
  await inBatches(clients.length, 500, (index) => clients[index]!.close())
}
