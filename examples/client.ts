// The example client: start the server (`npm start`), then `npx tsx examples/client.ts`.
import { MeshClient, MeshError } from 'meshkit/client'

const client = new MeshClient(process.env.MESH_URL ?? 'ws://localhost:4000')
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
const { history } = await client.subscribe<{ text: string }>(
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

const noted = new Promise<{ text: string }>((resolve) => client.once<{ text: string }>('noted', resolve))
client.send('note', 'hello server')
console.log('message → noted:', (await noted).text)

try {
  await client.command('whoami', {})
} catch (error) {
  if (error instanceof MeshError) console.log(`whoami without a token → ${error.code}: ${error.message}`)
}
console.log('whoami →', await client.command('whoami', { token: 'ada' }))

try {
  await client.command('no-such-command')
} catch (error) {
  if (error instanceof MeshError) console.log(`unknown command → ${error.code}`)
}
await client.close()
