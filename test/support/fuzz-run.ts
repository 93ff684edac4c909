import { WebSocket } from 'ws'
import type { MeshClient } from '../../src/client/index.js'
import type { MeshServer } from '../../src/server/index.js'
import { codecByName } from '../../src/shared/codec.js'
import { FrameType, Subprotocol } from '../../src/shared/protocol.js'
import { FuzzCommand, FuzzMessageType, fuzzSession } from './fuzz-frames.js'

/** What a fuzz server serves: commands that echo, wait and throw, message handlers that throw and reject, and every room and channel name. */
export function configureFuzzServer(server: MeshServer): void {
  server.registerCommand(FuzzCommand.ECHO, (ctx) => ctx.payload)
  server.registerCommand<{ ms?: unknown } | undefined>(FuzzCommand.SLOW, async (ctx) => {
    const ms = Math.min(50, Math.max(0, Number(ctx.payload?.ms) || 0))
    await new Promise((resolve) => setTimeout(resolve, ms))
    return ms
  })
  server.registerCommand(FuzzCommand.THROWS, () => {
    throw new Error('handler failure')
  })
  server.onMessage(FuzzMessageType.RECORD, (ctx) => void Object.keys(ctx.data ?? {}))
  server.onMessage(FuzzMessageType.THROWS, () => {
    throw new Error('message handler failure')
  })
  server.onMessage(FuzzMessageType.REJECTS, async () => {
    throw new Error('async message handler failure')
  })
  server.onMessage('*', (ctx) => void String(ctx.type))
  server.exposeRoom(/.*/)
  server.exposeChannel(/.*/)
}

/** How a hostile session ended: its closing probe answered, the server closed it, or neither in time. */
export type SessionOutcome = 'answered' | 'closed' | 'hung'

/** Far from any id the junk uses, so its answer is recognisable. */
const PROBE_ID = 4_000_000_001

/**
 * Plays the session of `seed` against a server: sends every message as soon as the
 * socket opens (before the hello), then one valid request. A server that is still
 * healthy either answers that request or has closed the socket on the junk.
 */
export async function playSession(url: string, seed: number, timeout = 5_000): Promise<{ outcome: SessionOutcome; frames: number; closeCode?: number }> {
  const session = fuzzSession(seed)
  const codec = codecByName(session.codec)
  const socket = new WebSocket(url, [Subprotocol[session.codec]], { maxPayload: 64 * 1024 * 1024 })
  socket.on('error', () => {})
  let frames = 0
  let closeCode: number | undefined
  const outcome = await new Promise<SessionOutcome>((resolve) => {
    const timer = setTimeout(() => resolve('hung'), timeout)
    const done = (result: SessionOutcome): void => {
      clearTimeout(timer)
      resolve(result)
    }
    socket.on('close', (code) => {
      closeCode = code
      done('closed')
    })
    socket.on('message', (data: Buffer, isBinary) => {
      try {
        const frame = codec.decode(isBinary ? new Uint8Array(data) : data.toString()) as unknown[]
        if (frame[0] === FrameType.RESPONSE && frame[1] === PROBE_ID) done('answered')
      } catch {
        // The server never sends junk; a decoding failure here would show up as 'hung'.
      }
    })
    socket.on('open', () => {
      for (const message of session.messages) {
        socket.send(message.data, { binary: message.binary })
        frames++
      }
      socket.send(codec.encode([FrameType.REQUEST, PROBE_ID, FuzzCommand.ECHO, 'probe']))
      frames++
    })
  })
  socket.terminate()
  return { outcome, frames, ...(outcome === 'closed' ? { closeCode } : {}) }
}

/** A client that uses the server correctly meanwhile; every failure it sees is counted. */
export class WellBehavedClient {
  commands = 0
  readonly failures: string[] = []
  private running = true
  private loop: Promise<void> | undefined

  constructor(private readonly client: MeshClient) {}

  start(): void {
    this.loop = this.run()
  }

  private async run(): Promise<void> {
    for (let i = 0; this.running; i++) {
      const payload = { i, text: `message ${i}`, list: [i, -i, 'x'] }
      try {
        const echoed = await this.client.command(FuzzCommand.ECHO, payload, 10_000)
        if (JSON.stringify(echoed) !== JSON.stringify(payload)) this.failures.push(`echo ${i} came back as ${JSON.stringify(echoed)}`)
        this.commands++
      } catch (error) {
        this.failures.push(`echo ${i}: ${(error as { code?: string }).code ?? String(error)}`)
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false
    await this.loop
  }
}
