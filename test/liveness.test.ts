import { once } from 'node:events'
import { describe, expect, it, onTestFinished } from 'vitest'
import { WebSocket } from 'ws'
import type { Connection } from 'meshkit/server'
import { codecByName } from '../src/shared/codec.js'
import { FrameType } from '../src/shared/protocol.js'
import { fakeServer } from './support/fake-server.js'
import { RawClient, connectClient, deferred, nextEvent, startServer, urlOf } from './support/harness.js'

describe('liveness and latency', () => {
  it('pings the client and reports the measured latency on both sides', async () => {
    const server = await startServer({ pingInterval: 40, latencyInterval: 25 })
    const seen = deferred<Connection>()
    server.onConnection((connection) => seen.resolve(connection))
    const client = await connectClient(server)
    await nextEvent(client, 'ping')
    const latency = await nextEvent<number>(client, 'latency')
    expect(typeof latency).toBe('number')
    expect(latency).toBeGreaterThanOrEqual(0)
    expect(client.latency).toBe(latency)
    const connection = await seen.promise
    expect(connection.latency).toBeTypeOf('number')
  })

  it('answers pings on the wire with pongs that echo the sequence number', async () => {
    const server = await startServer({ pingInterval: 30, latencyInterval: 10_000 })
    const raw = await RawClient.open(server)
    await raw.hello()
    const ping = await raw.nextOfType(FrameType.PING)
    raw.send([FrameType.PONG, ping[1]])
    const latency = await raw.nextOfType(FrameType.LATENCY)
    expect(latency[1]).toBeGreaterThanOrEqual(0)
  })

  it('terminates a peer that stops answering pings, and keeps the ones that answer', async () => {
    const server = await startServer({ pingInterval: 30, latencyInterval: 10_000, maxMissedPongs: 1 })
    const gone = deferred<Connection>()
    server.onDisconnection((connection) => gone.resolve(connection))
    const healthy = await connectClient(server)
    const silent = await RawClient.open(server)
    const hello = await silent.hello()
    const closed = await silent.closed
    // Terminated, not closed politely: a dead peer would never complete a close handshake.
    expect(closed.code).toBe(1006)
    expect((await gone.promise).id).toBe(hello[2])
    expect(healthy.state).toBe('open')
    expect(server.connections.has(healthy.id!)).toBe(true)
  })

  it('tolerates exactly maxMissedPongs missed pongs before terminating', async () => {
    const server = await startServer({ pingInterval: 25, latencyInterval: 10_000, maxMissedPongs: 3 })
    const raw = await RawClient.open(server)
    await raw.hello()
    // Ignore pings but count them: the peer must survive more sweeps than with maxMissedPongs 1.
    let pings = 0
    raw.socket.on('message', () => pings++)
    await raw.closed
    expect(pings).toBeGreaterThanOrEqual(4)
  })

  it('pings every connection when there are more than one chunk of them, and cuts none that answer', { timeout: 30_000 }, async () => {
    // Pings go out in chunks of 500 per turn of the event loop; 1,100 needs three.
    // Generous tolerance: the test process itself is busy with 1,100 sockets, and may answer late.
    const server = await startServer({ pingInterval: 300, latencyInterval: 60_000, maxMissedPongs: 3 })
    const count = 1_100
    const codec = codecByName('msgpack')
    const pinged = new Set<WebSocket>()
    let closed = 0
    const allPinged = deferred()
    // Each socket answers pings from its first moment: connecting 1,100 spans several sweeps.
    const sockets = await Promise.all(
      Array.from({ length: count }, async () => {
        const socket = new WebSocket(urlOf(server), ['meshkit.msgpack'])
        socket.on('error', () => {})
        socket.on('close', () => closed++)
        socket.on('message', (data: Buffer) => {
          const frame = codec.decode(new Uint8Array(data)) as unknown[]
          if (frame[0] !== FrameType.PING) return
          socket.send(codec.encode([FrameType.PONG, frame[1]]))
          pinged.add(socket)
          if (pinged.size === count) allPinged.resolve()
        })
        onTestFinished(() => socket.terminate())
        await once(socket, 'open')
        return socket
      }),
    )
    await allPinged.promise
    // Two more sweeps: a connection the sweep missed would now count as silent and be cut.
    for (let sweep = 0; sweep < 3; sweep++) await new Promise((resolve) => sockets[count - 1]!.once('message', resolve))
    expect(closed).toBe(0)
    expect(server.connections.size).toBe(count)
  })

  it('treats a server that stops pinging as dead, and reconnects', async () => {
    let connections = 0
    const url = await fakeServer((socket) => {
      connections++
      socket.send(codecByName('msgpack').encode([FrameType.HELLO, 1, `fake-${connections}`, { maxPayload: 1 << 20, pingInterval: 20 }]))
      // ...and then silence: no pings ever.
    })
    const client = await connectClient(url, { pingTimeout: 40, maxMissedPings: 1, reconnectInterval: 10 })
    const disconnect = await nextEvent<{ code: number }>(client, 'disconnect')
    expect(disconnect.code).toBe(4000)
    await nextEvent(client, 'reconnect')
    expect(connections).toBe(2)
    expect(client.id).toBe('fake-2')
  })
})
