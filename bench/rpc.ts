// RPC round trips: 50 clients with 10 requests in flight each, small object payload.
// Targets run in their own processes, interleaved in rounds; medians are reported as
// ratios to raw ws. Run: npx tsx bench/rpc.ts [seconds-per-run] [rounds]
import { WebSocket } from 'ws'
import { MeshClient } from 'meshkit/client'
import { median, percentile, startServerProcess } from './support.js'

const CLIENTS = 50
const IN_FLIGHT = 10
const seconds = Number(process.argv[2] ?? 3)
const rounds = Number(process.argv[3] ?? 3)
const payload = { user: 'ada', action: 'update', values: [1, 2, 3], at: 1_700_000_000_000 }

interface Result {
  rps: number
  p50: number
  p99: number
}

type Caller = () => Promise<void>

async function measure(callers: Caller[]): Promise<Result> {
  const latencies: number[] = []
  let running = true
  let count = 0
  const loop = async (call: Caller): Promise<void> => {
    while (running) {
      const started = performance.now()
      await call()
      latencies.push(performance.now() - started)
      count++
    }
  }
  // A short warm-up so JIT and socket buffers settle before counting.
  const warm = Date.now() + 500
  await Promise.all(callers.slice(0, CLIENTS).map(async (call) => {
    while (Date.now() < warm) await call()
  }))
  const startedAt = performance.now()
  const loops = callers.flatMap((call) => Array.from({ length: IN_FLIGHT }, () => loop(call)))
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  running = false
  await Promise.all(loops)
  const elapsed = (performance.now() - startedAt) / 1000
  latencies.sort((a, b) => a - b)
  return { rps: count / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

async function rawWs(port: number): Promise<Result> {
  const sockets = await Promise.all(
    Array.from({ length: CLIENTS }, () => new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
      socket.once('open', () => resolve(socket))
      socket.once('error', reject)
    })),
  )
  const callers = sockets.map((socket) => {
    let nextId = 0
    const pending = new Map<number, () => void>()
    socket.on('message', (data) => {
      const reply = JSON.parse(data.toString()) as { id: number }
      pending.get(reply.id)?.()
      pending.delete(reply.id)
    })
    return () => new Promise<void>((resolve) => {
      const id = ++nextId
      pending.set(id, resolve)
      socket.send(JSON.stringify({ id, data: payload }))
    })
  })
  const result = await measure(callers)
  for (const socket of sockets) socket.terminate()
  return result
}

async function meshkit(port: number): Promise<Result> {
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      const client = new MeshClient(`ws://127.0.0.1:${port}`)
      await client.connect()
      return client
    }),
  )
  const result = await measure(clients.map((client) => async () => {
    await client.command('echo', payload)
  }))
  await Promise.all(clients.map((client) => client.close()))
  return result
}

const targets = { 'raw ws + JSON': { script: 'raw-ws.ts', run: rawWs }, meshkit: { script: 'meshkit.ts', run: meshkit } }
const results: Record<string, Result[]> = {}
for (let round = 1; round <= rounds; round++) {
  for (const [name, target] of Object.entries(targets)) {
    const server = await startServerProcess(target.script)
    const result = await target.run(server.port)
    await server.stop()
    ;(results[name] ??= []).push(result)
    console.log(`round ${round} ${name}: ${Math.round(result.rps)} rps, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms`)
  }
}

const base = results['raw ws + JSON']!
const baseRps = median(base.map((r) => r.rps))
const baseP99 = median(base.map((r) => r.p99))
console.log(`\n| target | round-trips/s | p50 ms | p99 ms | rps vs raw ws | p99 vs raw ws |`)
console.log(`|---|---|---|---|---|---|`)
for (const [name, list] of Object.entries(results)) {
  const rps = median(list.map((r) => r.rps))
  const p50 = median(list.map((r) => r.p50))
  const p99 = median(list.map((r) => r.p99))
  console.log(`| ${name} | ${Math.round(rps)} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${(rps / baseRps).toFixed(2)}× | ${(p99 / baseP99).toFixed(2)}× |`)
}
process.exit(0)
