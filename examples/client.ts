// The example client: start the server (`npm start`), then `npm run client`.
import { MeshClient, MeshError } from 'meshkit/client'
import type { ExampleApi } from './api.js'

// Typed by the API the server uses: names, payloads, results and events are checked.
const client = new MeshClient<ExampleApi>(process.env.MESH_URL ?? 'ws://localhost:4000')
client.on('welcome', (payload) => console.log('welcome', payload))
client.on('shouted', (payload) => console.log('shouted', payload))
client.on('latency', (ms) => console.log(`latency ${ms} ms`))
// After a reconnect the client resumes channels, rejoins rooms and re-authenticates by itself,
// retrying while the server cannot; these events say how it went (nothing is dropped silently).
client.on('recovery', ({ channel, complete, missed, subscribed, retrying, error }) =>
  console.log('recovery', { channel, complete, missed, subscribed, retrying, code: error?.code }),
)
client.on('rejoin', ({ room, joined, retrying }) => console.log('rejoin', { room, joined, retrying }))

await client.connect()
console.log('connected as', client.id)
console.log('echo →', await client.command('echo', 'Hello, world!'))
console.log('shout →', await client.command('shout', { text: 'hello everyone' }))
console.log('join →', await client.command('join', { room: 'lobby' }))

let heard!: () => void
const arrived = new Promise<void>((resolve) => (heard = resolve))
const { history } = await client.subscribe(
  'chat:general',
  (message) => {
    console.log('chat:general ←', message.text)
    heard()
  },
  { historyLimit: 5 },
)
console.log(`chat:general history: ${history.length} message(s)`)
await client.command('say', { room: 'general', name: 'example client', text: 'hello channel' })
await arrived

const noted = new Promise<{ text: string }>((resolve) => client.once('noted', resolve))
client.send('note', 'hello server')
console.log('message → noted:', (await noted).text)

try {
  await client.command('whoami', {})
} catch (error) {
  if (error instanceof MeshError) console.log(`whoami without a token → ${error.code}: ${error.message}`)
}
console.log('whoami →', await client.command('whoami', { token: 'ada' }))

try {
  // The compiler refuses a name the API lacks; the untyped view of the same client does not.
  await (client as MeshClient).command('no-such-command')
} catch (error) {
  if (error instanceof MeshError) console.log(`unknown command → ${error.code}`)
}
try {
  // Checked by the server too: an invalid payload never reaches middleware or the handler.
  await (client as MeshClient).command('shout', { text: 42 })
} catch (error) {
  if (error instanceof MeshError) console.log(`shout with a number → ${error.code}`)
}
await client.close()
