// What a channel resume costs on a long history (issue 9, defect 4). Starts its own
// redis-server, fills one channel with MESSAGES messages (default 1,000,000) by
// pipelined writes, then measures on the server's process, over a raw WebSocket:
//   - a resume that missed nothing, and one that missed 10
//   - a fresh subscribe asking historyLimit: 1e6 (the reply's size)
//   - CONCURRENT (default 10) resumes at once, while an unrelated Redis call
//     (isInRoom) is timed in a loop
// Wall time, RSS growth (and peak RSS growth), and the longest event-loop stall
// (perf_hooks.monitorEventLoopDelay). Run: node --expose-gc --import tsx bench/channel-resume.ts
// With REDIS_URL it uses that Redis instead and fills only with FILL=1, so that two
// checkouts (before and after a change) can be measured on one filled channel.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pack, unpack } from 'msgpackr'
import { WebSocket } from 'ws'
import { MeshServer } from 'meshkit/server'
import { startRedisServer } from '../test/support/redis-server.js'

const MESSAGES = Number(process.env.MESSAGES ?? 1_000_000)
const CONCURRENT = Number(process.env.CONCURRENT ?? 10)
const CHANNEL = 'long'
const REQUEST = 1
const RESPONSE = 2

/** A bare msgpack WebSocket client: requests by id, replies with their size on the wire. */
async function rawClient(port: number): Promise<{ request(command: string, payload: unknown): Promise<{ reply: any; bytes: number }>; close(): void }> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, ['meshkit.msgpack'], { maxPayload: 1024 * 1024 * 1024 })
  const waiting = new Map<number, (answer: { reply: any; bytes: number }) => void>()
  let nextId = 1
  socket.on('message', (data: Buffer) => {
    const frame = unpack(data) as unknown[]
    if (frame[0] === RESPONSE) waiting.get(frame[1] as number)?.({ reply: frame[2], bytes: data.byteLength })
    else if (frame[0] === 3) waiting.get(frame[1] as number)?.({ reply: { error: frame[2] }, bytes: data.byteLength })
  })
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
  return {
    request(command, payload) {
      const id = nextId++
      return new Promise((resolve) => {
        waiting.set(id, resolve)
        socket.send(pack([REQUEST, id, command, payload]))
      })
    },
    close: () => socket.terminate(),
  }
}

interface Measured<T> {
  result: T
  ms: number
  rssMb: number
  peakRssMb: number
  stallMs: number
}

/** Runs `work` and reports its wall time, RSS growth and the longest event-loop stall meanwhile. */
async function measure<T>(work: () => Promise<T>): Promise<Measured<T>> {
  globalThis.gc?.()
  const histogram = monitorEventLoopDelay({ resolution: 5 })
  const rss = process.memoryUsage().rss
  const peak = process.resourceUsage().maxRSS * 1024
  histogram.enable()
  const start = performance.now()
  const result = await work()
  const ms = performance.now() - start
  histogram.disable()
  const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10
  return {
    result,
    ms: Math.round(ms),
    rssMb: mb(process.memoryUsage().rss - rss),
    peakRssMb: mb(process.resourceUsage().maxRSS * 1024 - peak),
    stallMs: Math.round(histogram.max / 1e6),
  }
}

async function main(): Promise<void> {
  const given = process.env.REDIS_URL
  const redis = given ? { url: given, stop: async () => {} } : await startRedisServer()
  const server = new MeshServer({ host: '127.0.0.1', port: 0, redis: redis.url, namespace: 'bench-resume' })
  server.exposeChannel(CHANNEL)
  try {
    await server.ready()
    const filling = performance.now()
    for (let start = 0; start < (!given || process.env.FILL === '1' ? MESSAGES : 0); start += 10_000) {
      const batch: Array<Promise<number>> = []
      for (let n = start; n < Math.min(MESSAGES, start + 10_000); n++) batch.push(server.writeChannel(CHANNEL, { n, text: 'hello world, hello' }, MESSAGES))
      await Promise.all(batch)
    }
    console.log(`filled in ${Math.round(performance.now() - filling)} ms`)

    const client = await rawClient(server.port)
    const { reply: fresh } = await client.request('mesh/subscribe', { channel: CHANNEL })
    const latest = fresh.offset as number
    const rows: Array<[string, Measured<unknown>]> = []

    const nothing = await measure(() => client.request('mesh/subscribe', { channel: CHANNEL, since: latest }))
    rows.push(['resume, missed nothing', nothing])
    for (let n = 0; n < 10; n++) await server.writeChannel(CHANNEL, { n: MESSAGES + n, text: 'late' }, MESSAGES)
    const ten = await measure(() => client.request('mesh/subscribe', { channel: CHANNEL, since: latest }))
    rows.push([`resume, missed 10 (got ${(ten.result as any).reply.missed?.length})`, ten])
    const huge = await measure(() => client.request('mesh/subscribe', { channel: CHANNEL, historyLimit: 1e6 }))
    const hugeReply = huge.result as { reply: any; bytes: number }
    rows.push([`fresh, historyLimit 1e6 (got ${hugeReply.reply.history?.length}, ${(hugeReply.bytes / 1e6).toFixed(2)} MB)`, huge])

    // Concurrent resumes on their own connections, and an unrelated Redis call timed meanwhile.
    const clients = await Promise.all(Array.from({ length: CONCURRENT }, () => rawClient(server.port)))
    const now = latest + 10
    const probes: number[] = []
    const together = await measure(async () => {
      let probing = true
      const probe = (async () => {
        while (probing) {
          const start = performance.now()
          await server.isInRoom('unrelated', 'nobody').catch(() => {})
          probes.push(performance.now() - start)
          await new Promise((resolve) => setTimeout(resolve, 2))
        }
      })()
      const replies = await Promise.all(clients.map((c) => c.request('mesh/subscribe', { channel: CHANNEL, since: now })))
      probing = false
      await probe
      return replies
    })
    const failed = (together.result as Array<{ reply: any }>).filter(({ reply }) => reply.success !== true).length
    rows.push([`${CONCURRENT} resumes at once (${failed} failed)`, together])
    const behind = await measure(() => Promise.all(clients.map((c) => c.request('mesh/subscribe', { channel: CHANNEL, since: now - 5_000 }))))
    const replies = behind.result as Array<{ reply: any }>
    const got = replies.map(({ reply }) => (reply.success ? `${reply.missed.length}${reply.complete ? '' : ' incomplete'}` : 'failed'))
    rows.push([`${CONCURRENT} resumes at once, each missed 5,000 (${[...new Set(got)].join(', ')})`, behind])

    console.log('\n| scenario | wall ms | RSS growth MB | peak RSS growth MB | longest event-loop stall ms |')
    console.log('|---|---|---|---|---|')
    for (const [name, m] of rows) console.log(`| ${name} | ${m.ms} | ${m.rssMb} | ${m.peakRssMb} | ${m.stallMs} |`)
    const sorted = [...probes].sort((a, b) => a - b)
    console.log(`\nunrelated Redis call (isInRoom) during the ${CONCURRENT} resumes: ${probes.length} calls, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms`)
    for (const c of [client, ...clients]) c.close()
  } finally {
    await server.close()
    await redis.stop()
  }
}

await main()
