import { FrameType, MAX_REQUEST_ID } from '../shared/protocol.js'
import type { Connection } from './connection.js'

export interface HeartbeatOptions {
  pingInterval: number
  latencyInterval: number
  maxMissedPongs: number
}

/**
 * Application-level pings for every connection of the server, from two shared
 * timers rather than two per connection. A ping frame is encoded once per codec
 * per sweep. Every pong proves liveness and yields a latency measurement.
 */
export class Heartbeat {
  private pingTimer: ReturnType<typeof setInterval> | undefined
  private latencyTimer: ReturnType<typeof setInterval> | undefined
  private seq = 0
  /** When the previous liveness sweep pinged; a pong after it proves the peer answered. */
  private previousSweepAt = -Infinity

  constructor(
    private readonly connections: ReadonlyMap<string, Connection>,
    private readonly options: HeartbeatOptions,
  ) {}

  start(): void {
    this.pingTimer ??= setInterval(() => this.sweep(), this.options.pingInterval)
    this.latencyTimer ??= setInterval(() => this.pingAll(), this.options.latencyInterval)
    this.pingTimer.unref?.()
    this.latencyTimer.unref?.()
  }

  stop(): void {
    clearInterval(this.pingTimer)
    clearInterval(this.latencyTimer)
    this.pingTimer = this.latencyTimer = undefined
  }

  /** A pong for the latest ping gives the round trip; any pong proves the peer alive. */
  onPong(connection: Connection, seq: number): void {
    const now = performance.now()
    connection.lastPongAt = now
    connection.missedPongs = 0
    if (seq === connection.pingSeq && connection.pingSentAt > 0) {
      const roundTrip = now - connection.pingSentAt
      connection.pingSentAt = 0
      connection.recordLatency(Math.round(roundTrip * 100) / 100)
    }
  }

  private sweep(): void {
    const now = performance.now()
    for (const connection of this.connections.values()) {
      if (connection.lastPongAt < this.previousSweepAt) connection.missedPongs++
      // Dead peers are cut at once: a close handshake with them would only wait.
      if (connection.missedPongs > this.options.maxMissedPongs) connection.terminate()
    }
    this.previousSweepAt = now
    this.pingAll()
  }

  /**
   * Pings in chunks, yielding to the event loop between them: with tens of thousands
   * of connections one synchronous loop would stall everything else for its length.
   */
  private pingAll(): void {
    this.seq = this.seq >= MAX_REQUEST_ID ? 1 : this.seq + 1
    const seq = this.seq
    const connections = [...this.connections.values()]
    const encoded = new Map<Connection['codec'], ReturnType<Connection['codec']['encode']>>()
    let index = 0
    const pingChunk = (): void => {
      const now = performance.now()
      const end = Math.min(index + PING_CHUNK, connections.length)
      for (; index < end; index++) {
        const connection = connections[index]!
        if (!connection.isOpen) continue
        let data = encoded.get(connection.codec)
        if (data === undefined) encoded.set(connection.codec, (data = connection.codec.encode([FrameType.PING, seq])))
        connection.pingSeq = seq
        connection.pingSentAt = now
        // One frame per connection and sweep: nothing to batch it with.
        connection.write(data, false)
      }
      if (index < connections.length) setImmediate(pingChunk)
    }
    pingChunk()
  }
}

/** Connections pinged per turn of the event loop. */
const PING_CHUNK = 500
