// What a client message (`client.send`, issue 12) costs beside a command: one server,
// CLIENTS clients (default 4), each sending TOTAL / CLIENTS (default 400,000 in all)
//   - messages, in bursts of BURST (default 1,000) per turn of the event loop, until
//     the server's handler has counted them all
//   - commands with a sync handler, WINDOW (default 256) in flight per client
// Both through the meshkit client and server (msgpack), all in this one process, so
// the figures are the whole trip's CPU on one core; alternated ROUNDS times (default
// 3), medians printed with their ratio. Run after `npm run build`:
//   node --import tsx bench/client-messages.ts
import { performance } from 'node:perf_hooks'
import { MeshClient } from 'meshkit/client'
import { MeshServer } from 'meshkit/server'

const CLIENTS = Number(process.env.CLIENTS ?? 4)
const TOTAL = Number(process.env.TOTAL ?? 400_000)
const BURST = Number(process.env.BURST ?? 1_000)
const WINDOW = Number(process.env.WINDOW ?? 256)
const ROUNDS = Number(process.env.ROUNDS ?? 3)

const server = new MeshServer({ host: '127.0.0.1', port: 0 })
let handled = 0
let target = Infinity
let reached: (() => void) | undefined
server.onMessage('tick', () => {
  if (++handled === target) reached?.()
})
server.registerCommand('tick', () => true)
await server.ready()
const clients = await Promise.all(
  Array.from({ length: CLIENTS }, async () => {
    const client = new MeshClient(`ws://127.0.0.1:${server.port}`)
    await client.connect()
    return client
  }),
)
const each = Math.floor(TOTAL / CLIENTS)

async function messagesPerSecond(): Promise<number> {
  handled = 0
  target = each * CLIENTS
  const all = new Promise<void>((resolve) => (reached = resolve))
  const started = performance.now()
  await Promise.all(clients.map(async (client) => {
    for (let sent = 0; sent < each; ) {
      for (const end = Math.min(each, sent + BURST); sent < end; sent++) client.send('tick', sent)
      // Lets the socket drain and the server read, as an application's sends spread over time would.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }))
  await all
  return target / ((performance.now() - started) / 1000)
}

async function commandsPerSecond(): Promise<number> {
  const started = performance.now()
  await Promise.all(clients.map(async (client) => {
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < each) {
        next++
        await client.command('tick', next)
      }
    }
    await Promise.all(Array.from({ length: WINDOW }, lane))
  }))
  return (each * CLIENTS) / ((performance.now() - started) / 1000)
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const messages: number[] = []
const commands: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  messages.push(await messagesPerSecond())
  commands.push(await commandsPerSecond())
  console.log(`round ${round + 1}: messages ${Math.round(messages.at(-1)!)}/s, commands ${Math.round(commands.at(-1)!)}/s`)
}
console.log(`median: messages ${Math.round(median(messages))}/s, commands ${Math.round(median(commands))}/s, ratio ${(median(messages) / median(commands)).toFixed(2)}×`)
for (const client of clients) await client.close()
await server.close()
