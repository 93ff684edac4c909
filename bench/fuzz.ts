// Hostile input, measured: `npx tsx bench/fuzz.ts`. A meshkit server runs in a child
// process (so a crash is seen as its exit, and it is restarted to go on); seeded
// hostile sessions (test/support/fuzz-frames.ts) hit it from several sockets while a
// well-behaved client uses it. FUZZ_SESSIONS (5000), FUZZ_SECONDS (180),
// FUZZ_CONCURRENCY (8) and FUZZ_SEED (1000000) bound and place the run; a seed
// printed here replays with `fuzzSession(seed)`.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { MeshClient } from 'meshkit/client'
import { playSession, WellBehavedClient, type SessionOutcome } from '../test/support/fuzz-run.js'
import { repoRoot } from './support.js'

interface ServerStats {
  rss: number
  heapUsed: number
  connections: number
  unhandledRejections: number
}

const env = process.env
const SESSIONS = Number(env.FUZZ_SESSIONS ?? 5000)
const SECONDS = Number(env.FUZZ_SECONDS ?? 180)
const CONCURRENCY = Number(env.FUZZ_CONCURRENCY ?? 8)
const FIRST_SEED = Number(env.FUZZ_SEED ?? 1_000_000)

/** The server under fuzz, in a child process; `exited` settles when it dies. */
async function startChild(): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/fuzz-server.ts'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /PORT (\d+)/.exec(output)
      if (match) resolve(Number(match[1]))
    })
    void exited.then((code) => reject(new Error(`fuzz server exited with ${code} before listening`)))
  })
  return { child, port, exited }
}

async function stats(client: MeshClient): Promise<ServerStats> {
  return client.command<ServerStats>('fuzz/stats', undefined, 30_000)
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`

let server = await startChild()
const crashes: Array<{ code: number | null; seeds: number[] }> = []
const inFlight = new Set<number>()
let client = new MeshClient(`ws://127.0.0.1:${server.port}`)
await client.connect()
const before = await stats(client)
const wellBehaved = new WellBehavedClient(client)
wellBehaved.start()

const outcomes: Record<SessionOutcome, number[]> = { answered: [], closed: [], hung: [] }
const samples: string[] = []
let completed = 0
let nextSample = 1000
let frames = 0
let next = FIRST_SEED
const started = Date.now()
let crashed = false
let stopping = false
const watchCrash = (): void => {
  void server.exited.then((code) => {
    if (!crashed && !stopping) crashes.push({ code, seeds: [...inFlight] })
    crashed = true
  })
}
watchCrash()

const worker = async (): Promise<void> => {
  while (next < FIRST_SEED + SESSIONS && Date.now() - started < SECONDS * 1000) {
    const seed = next++
    inFlight.add(seed)
    const result = await playSession(`ws://127.0.0.1:${server.port}`, seed)
    inFlight.delete(seed)
    outcomes[result.outcome].push(seed)
    frames += result.frames
    if (crashed) {
      // Go on against a fresh server, so that one crash does not hide the next.
      crashed = false
      await wellBehaved.stop()
      client.close()
      server = await startChild()
      watchCrash()
      client = new MeshClient(`ws://127.0.0.1:${server.port}`)
      await client.connect()
    }
    completed++
    if (completed >= nextSample) {
      // RSS along the way: a leak grows with the sessions, a one-off allocation does not.
      nextSample += 1000
      const now = await stats(client)
      samples.push(`${completed}: ${mb(now.rss)}`)
      process.stderr.write(`  ${completed} sessions, ${frames} frames, RSS ${mb(now.rss)}, heap ${mb(now.heapUsed)}\n`)
    }
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker))
await wellBehaved.stop()
const after = await stats(client)
const seconds = (Date.now() - started) / 1000
client.close()
stopping = true
server.child.kill('SIGTERM')
await server.exited

const rows: Array<[string, string]> = [
  ['hostile sessions (seeds)', `${outcomes.answered.length + outcomes.closed.length + outcomes.hung.length} (${FIRST_SEED}..${next - 1})`],
  ['frames sent', String(frames)],
  ['duration', `${seconds.toFixed(1)} s (${Math.round(frames / seconds)} frames/s)`],
  ['sessions answered / closed by the server / hung', `${outcomes.answered.length} / ${outcomes.closed.length} / ${outcomes.hung.length}`],
  ['server crashes', String(crashes.length)],
  ['unhandled rejections in the server', String(after.unhandledRejections)],
  ['RSS before → after (after gc)', `${mb(before.rss)} → ${mb(after.rss)}`],
  ['RSS along the run (sessions: RSS)', samples.join(', ') || '-'],
  ['heap used before → after (after gc)', `${mb(before.heapUsed)} → ${mb(after.heapUsed)}`],
  ['server connections before → after', `${before.connections} → ${after.connections}`],
  ['well-behaved client: commands / failures', `${wellBehaved.commands} / ${wellBehaved.failures.length}`],
]
console.log('\n| measure | value |\n|---|---|')
for (const [name, value] of rows) console.log(`| ${name} | ${value} |`)
if (outcomes.hung.length > 0) console.log(`\nhung seeds: ${outcomes.hung.slice(0, 20).join(', ')}`)
for (const crash of crashes) console.log(`\ncrash (exit ${crash.code}) with seeds in flight: ${crash.seeds.join(', ')}`)
if (wellBehaved.failures.length > 0) console.log(`\nwell-behaved failures: ${wellBehaved.failures.slice(0, 10).join('; ')}`)
process.exitCode = crashes.length + after.unhandledRejections + outcomes.hung.length + wellBehaved.failures.length > 0 ? 1 : 0
