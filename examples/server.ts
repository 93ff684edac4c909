// The example server: `npm start`. The chat demo on http://localhost:4000 and the WebSocket
// endpoint on the same port, on the embedded in-memory store (no Redis needed). With
// REDIS_URL set, start several (PORT=4001, PORT=4002...) and they act as one server.
import { startExampleServer } from './app.js'

const example = await startExampleServer({
  port: Number(process.env.PORT ?? 4000),
  redis: process.env.REDIS_URL,
})
example.server.onConnection((connection) => console.log(`+ ${connection.id} (${connection.codec.name})`))
example.server.onDisconnection((connection) => console.log(`- ${connection.id}`))

console.log(`meshkit example server on ws://localhost:${example.port}`)
console.log(`chat demo: open http://localhost:${example.port}/ in two browser windows`)
console.log(`health: /healthz, /readyz; Prometheus metrics: /metrics`)
console.log(`try: npm run client   (or any WebSocket tool with subprotocol meshkit.json)`)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void example.close().then(() => process.exit(0))
  })
}
