// Node only: loaded by `sync-support.ts` with the first socket in Node, never in browsers.
// Node's modules come from `process.getBuiltinModule`, not imports: a browser bundler
// follows this chunk's imports (it is a dynamic import of the client) and fails on
// `worker_threads`; with no import of them there is nothing for it to resolve.
import type { MessagePort, Worker } from 'node:worker_threads'
import { exceedsBytes } from '../shared/byte-length.js'
import { encodeFrame, tryDecode, type Codec, type WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { BuiltinCommand, CloseCode, FrameType, SyncSubprotocol, parseServerFrame } from '../shared/protocol.js'
import { SYNC_WORKER_SOURCE } from './sync-worker-source.js'

/** What a sync call needs of the client: its connection, and a way to hand the server a secret on it. */
export interface SyncTarget {
  connectionId: string
  url: string
  codec: Codec
  /** The server's `maxPayload`, as its hello announced it. */
  maxPayload: number
  /** Sends `mesh/sync-secret` on the connection's own socket and pushes it out now (the event loop is about to block). */
  offerSecret(secret: string): void
}

/** What the worker posts: a frame from the side channel, or its end. */
interface WorkerNotice {
  generation: number
  data?: WireData
  closed?: number
  reason?: string
  /** Whether the ended socket had opened: one that never did is a failed attempt, not a drop. */
  opened?: boolean
}

interface Binding {
  connectionId: string
  generation: number
}

/**
 * The main thread's side of `commandSync`: one worker thread per client, made on the
 * first call, holding the side channel; the calling thread posts the request and
 * sleeps on a shared counter (`Atomics.wait`) until the worker posts a frame or the
 * socket's end, reading the worker's messages with `receiveMessageOnPort`, which needs
 * no event loop. The side channel outlives calls and is bound again (a new secret)
 * when the connection changed or the channel ended.
 */
export class SyncCaller {
  private worker: Worker | undefined
  private port: MessagePort | undefined
  private readonly signal = new Int32Array(new SharedArrayBuffer(4))
  private binding: Binding | undefined
  private generation = 0
  /** Request ids of the side channel: its own space, never reused while a late reply may come. */
  private lastId = 0

  call(target: SyncTarget, name: string, payload: unknown, timeout: number): unknown {
    const id = this.nextId()
    const frame = encodeFrame(target.codec, [FrameType.REQUEST, id, name, payload])
    if (exceedsBytes(frame, target.maxPayload)) {
      throw new MeshError(ErrorCode.PAYLOAD_TOO_LARGE, `The request is larger than the server's limit of ${target.maxPayload} bytes`)
    }
    const { worker, port } = this.start()
    // What came since the last call: late replies of timed-out calls, or the end of an idle side channel.
    this.drain(port)
    if (this.binding?.connectionId !== target.connectionId) this.bind(target, worker)
    const generation = this.binding!.generation
    worker.postMessage({ send: generation, frame })
    const deadline = performance.now() + timeout
    for (;;) {
      const seen = Atomics.load(this.signal, 0)
      for (let notice = this.receive(port); notice; notice = this.receive(port)) {
        if (notice.generation !== generation) continue
        if (notice.closed !== undefined) {
          this.binding = undefined
          throw sideChannelClosed(notice.closed, notice.reason ?? '', notice.opened === true)
        }
        const reply = parseServerFrame(tryDecode(target.codec, notice.data!))
        if (reply?.[0] === FrameType.RESPONSE && reply[1] === id) return reply[2]
        if (reply?.[0] === FrameType.ERROR && (reply[1] === id || reply[1] === 0)) throw new MeshError(reply[2], reply[3], { data: reply[4] })
        // Anything else is the late reply of a call that timed out.
      }
      const remaining = deadline - performance.now()
      // Written so that a NaN timeout fails at once rather than waiting forever.
      if (!(remaining > 0)) throw new MeshError(ErrorCode.TIMEOUT, `No reply within ${timeout} ms`)
      // Returns at once if the worker posted after `seen` was read: no notice is missed.
      Atomics.wait(this.signal, 0, seen, remaining)
    }
  }

  /** The client closed: the worker and its socket go (it never kept the process alive: it is unref'ed). */
  close(): void {
    void this.worker?.terminate()
    this.port?.close()
    this.worker = this.port = this.binding = undefined
  }

  private nextId(): number {
    this.lastId = this.lastId >= 0xffffffff ? 1 : this.lastId + 1
    return this.lastId
  }

  private start(): { worker: Worker; port: MessagePort } {
    if (this.worker && this.port) return { worker: this.worker, port: this.port }
    const { MessageChannel, Worker } = threads()
    const { port1, port2 } = new MessageChannel()
    let worker: Worker
    try {
      worker = new Worker(SYNC_WORKER_SOURCE, {
        eval: true,
        workerData: { port: port2, control: this.signal.buffer, wsPath: wsPath() },
        transferList: [port2],
      })
    } catch (error) {
      // A bundle without node_modules (no `ws` to find), or no thread to be had.
      port1.close()
      throw new MeshError(ErrorCode.NOT_SUPPORTED, 'commandSync could not start its worker thread', { cause: error })
    }
    worker.unref()
    // A worker that fails to start is seen by the caller as a timeout; this keeps it from being an uncaught error.
    worker.on('error', () => {
      if (this.worker === worker) this.close()
    })
    this.worker = worker
    this.port = port1
    return { worker, port: port1 }
  }

  /** A new secret on the connection's own socket, and a new side channel presenting it. */
  private bind(target: SyncTarget, worker: Worker): void {
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')
    target.offerSecret(secret)
    const generation = ++this.generation
    this.binding = { connectionId: target.connectionId, generation }
    const attach = encodeFrame(target.codec, [FrameType.REQUEST, this.nextId(), BuiltinCommand.SYNC_ATTACH, { connectionId: target.connectionId, secret }])
    worker.postMessage({ open: generation, url: target.url, protocol: SyncSubprotocol[target.codec.name], attach })
  }

  private drain(port: MessagePort): void {
    for (let notice = this.receive(port); notice; notice = this.receive(port)) {
      if (notice.closed !== undefined && notice.generation === this.binding?.generation) this.binding = undefined
    }
  }

  private receive(port: MessagePort): WorkerNotice | undefined {
    return threads().receiveMessageOnPort(port)?.message as WorkerNotice | undefined
  }
}

/**
 * The side channel ended during a call: it could not be opened (the server is gone, or
 * older and without side channels) or was refused (4403), or it went with the server or
 * the connection, the request in flight.
 */
function sideChannelClosed(code: number, reason: string, opened: boolean): MeshError {
  if (code === CloseCode.SIDE_CHANNEL_REFUSED || !opened) {
    return new MeshError(ErrorCode.CONNECTION_FAILED, `The server refused the commandSync side channel: ${reason}`, {
      data: { reason: 'closed', closeCode: code, closeReason: reason },
    })
  }
  return new MeshError(ErrorCode.CONNECTION_CLOSED, 'The connection closed before the reply arrived', { data: { closeCode: code, closeReason: reason } })
}

/**
 * Where `ws` is, resolved from meshkit's own location (the worker's `require` would
 * start from the process's directory). tsup's `shims` turn `import.meta.url` into the
 * file's URL in the CommonJS build.
 */
function wsPath(): string {
  return process.getBuiltinModule('node:module').createRequire(import.meta.url).resolve('ws')
}

/** Whether this Node can run `commandSync`: `process.getBuiltinModule` came with Node 20.16. */
export function supported(): boolean {
  return typeof process.getBuiltinModule === 'function'
}

function threads(): typeof import('node:worker_threads') {
  return process.getBuiltinModule('node:worker_threads')
}
