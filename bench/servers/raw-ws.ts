// Baseline: raw `ws` with JSON, the ceiling of anything built on ws. Echoes { id, data }.
import { WebSocketServer } from 'ws'

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
wss.on('connection', (socket) => {
  socket.on('message', (data) => {
    const request = JSON.parse(data.toString()) as { id: number; data: unknown }
    socket.send(JSON.stringify({ id: request.id, data: request.data }))
  })
})
wss.on('listening', () => console.log(`PORT ${(wss.address() as { port: number }).port}`))
