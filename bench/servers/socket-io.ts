// Socket.IO with acknowledgements; with BENCH_REDIS_URL, @socket.io/redis-adapter over
// ioredis so that instances share rooms. Broadcasts use io.to(room).emit.
import { once } from 'node:events'
import { createServer } from 'node:http'
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { Server } from 'socket.io'
import { serveControl } from './control.js'

type Ack = (reply: unknown) => void

const http = createServer()
// BENCH_LATENCY_INTERVAL (how often meshkit pings): Socket.IO's pingInterval (workload 13).
const pingEvery = Number(process.env.BENCH_LATENCY_INTERVAL ?? 0)
const io = new Server(http, { serveClient: false, perMessageDeflate: false, ...(pingEvery > 0 ? { pingInterval: pingEvery } : {}) })
const redisUrl = process.env.BENCH_REDIS_URL
if (redisUrl) {
  const pub = new Redis(redisUrl)
  const sub = pub.duplicate()
  await Promise.all([once(pub, 'ready'), once(sub, 'ready')])
  io.adapter(createAdapter(pub, sub, { key: process.env.BENCH_NAMESPACE ?? 'socket.io' }))
}

io.on('connection', (socket) => {
  socket.on('echo', (data: unknown, ack: Ack) => ack(data))
  socket.on('join', (room: string, ack: Ack) => {
    void socket.join(room)
    ack(true)
  })
  socket.on('fanout', ({ room, count, tag }: { room: string; count: number; tag: number }, ack: Ack) => {
    for (let seq = 0; seq < count; seq++) io.to(room).emit('tick', { seq, tag, text: 'hello, room' })
    ack(count)
  })
  // The awaited fan-out and chat workloads: io.to(room).emit returns nothing to await
  // (the adapter publishes and every instance filters), so Socket.IO's handlers are what
  // its users write, the same loop as 'fanout' and an emit before the acknowledgement.
  socket.on('fanoutAwaited', ({ room, count, tag }: { room: string; count: number; tag: number }, ack: Ack) => {
    for (let seq = 0; seq < count; seq++) io.to(room).emit('tick', { seq, tag, text: 'hello, room' })
    ack(count)
  })
  socket.on('say', (message: { room: string }, ack: Ack) => {
    io.to(message.room).emit('chat', message)
    ack(true)
  })
})
http.listen(0, '127.0.0.1', () => serveControl((http.address() as { port: number }).port, () => io.engine.clientsCount))
