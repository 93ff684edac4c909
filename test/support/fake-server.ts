import { once } from 'node:events'
import { onTestFinished } from 'vitest'
import { WebSocketServer, type WebSocket } from 'ws'

/** A WebSocket server that plays a meshkit server by hand. */
export async function fakeServer(onConnection: (socket: WebSocket) => void): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(wss, 'listening')
  wss.on('connection', onConnection)
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of wss.clients) socket.terminate()
        wss.close(() => resolve())
      }),
  )
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}`
}
