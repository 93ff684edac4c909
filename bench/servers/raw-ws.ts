// Baseline: raw `ws` with JSON, the ceiling of anything built on ws. Requests are
// { id, cmd, data }, replies { id, data }, events { event, data }. Rooms are Sets of
// sockets; a broadcast encodes its JSON once per message and loops over the Set.
import { WebSocketServer, type WebSocket } from 'ws'
import { serveControl } from './control.js'

interface Request {
  id: number
  cmd: string
  data: any
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
const rooms = new Map<string, Set<WebSocket>>()

function fanout({ room, count, tag }: { room: string; count: number; tag: number }): number {
  const members = rooms.get(room) ?? new Set()
  for (let seq = 0; seq < count; seq++) {
    const frame = Buffer.from(JSON.stringify({ event: 'tick', data: { seq, tag, text: 'hello, room' } }))
    for (const member of members) member.send(frame, { binary: false })
  }
  return count
}

wss.on('connection', (socket) => {
  const joined = new Set<string>()
  socket.on('message', (raw) => {
    const { id, cmd, data } = JSON.parse(raw.toString()) as Request
    let reply: unknown
    if (cmd === 'echo') reply = data
    else if (cmd === 'join') {
      let members = rooms.get(data)
      if (!members) rooms.set(data, (members = new Set()))
      members.add(socket)
      joined.add(data)
      reply = true
    } else if (cmd === 'fanout') reply = fanout(data)
    socket.send(JSON.stringify({ id, data: reply }))
  })
  socket.on('close', () => {
    for (const room of joined) rooms.get(room)?.delete(socket)
  })
})
// Heartbeats as ws's README has them, every BENCH_LATENCY_INTERVAL ms (how often meshkit
// pings): every tick, a socket that did not answer the previous ping is terminated and
// the others pinged.
const pingEvery = Number(process.env.BENCH_LATENCY_INTERVAL ?? 0)
if (pingEvery > 0) {
  const alive = (socket: WebSocket): boolean => (socket as WebSocket & { isAlive?: boolean }).isAlive !== false
  wss.on('connection', (socket) => {
    ;(socket as WebSocket & { isAlive?: boolean }).isAlive = true
    socket.on('pong', heartbeat)
  })
  setInterval(() => {
    for (const socket of wss.clients) {
      if (!alive(socket)) {
        socket.terminate()
        continue
      }
      ;(socket as WebSocket & { isAlive?: boolean }).isAlive = false
      socket.ping()
    }
  }, pingEvery)
}

function heartbeat(this: WebSocket): void {
  ;(this as WebSocket & { isAlive?: boolean }).isAlive = true
}

wss.on('listening', () => serveControl((wss.address() as { port: number }).port, () => wss.clients.size))
