// What a blocking command costs next to an awaited one: the first commandSync of a
// connection (worker thread start, secret, side channel), then round trips one after
// another with commandSync and with `await command()`, on one connection to a server in
// another process (a server on the blocked thread could never answer). Uses dist/:
// run `npm run build` first.
//   npx tsx bench/command-sync.ts            (CALLS=2000 by default)
import { spawn } from 'node:child_process'
import { MeshClient } from 'meshkit/client'
import { MeshServer } from 'meshkit/server'
import { median } from './support.js'

const CALLS = Number(process.env.CALLS ?? 2_000)
const ROUNDS = 5

if (process.argv[2] === 'server') {
  const server = new MeshServer({ host: '127.0.0.1', port: 0 })
  server.registerCommand('echo', (ctx) => ctx.payload)
  await server.ready()
  console.log(`PORT ${server.port}`)
} else {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'server'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      const match = /PORT (\d+)/.exec(chunk.toString())
      if (match) resolve(Number(match[1]))
    }),
  )
  try {
    const firsts: number[] = []
    const sync: number[] = []
    const awaited: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const client = new MeshClient(`ws://127.0.0.1:${port}`)
      await client.connect()
      let started = performance.now()
      client.commandSync('echo', 0)
      firsts.push(performance.now() - started)
      // Interleaved, so that the machine's other load falls on both alike.
      started = performance.now()
      for (let i = 0; i < CALLS; i++) client.commandSync('echo', { i })
      sync.push(((performance.now() - started) * 1000) / CALLS)
      started = performance.now()
      for (let i = 0; i < CALLS; i++) await client.command('echo', { i })
      awaited.push(((performance.now() - started) * 1000) / CALLS)
      await client.close()
    }
    const [first, s, a] = [median(firsts), median(sync), median(awaited)]
    console.log(`first commandSync of a client (worker start + side channel): ${first.toFixed(1)} ms (median of ${ROUNDS})`)
    console.log(`commandSync round trip: ${s.toFixed(1)} µs; await command(): ${a.toFixed(1)} µs; ratio ${(s / a).toFixed(2)}× (${CALLS} sequential calls, median of ${ROUNDS})`)
  } finally {
    child.kill()
  }
}
