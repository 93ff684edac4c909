// The benchmark: every workload for every target, targets interleaved in rounds, each
// target's server in its own process and the load here; medians and ratios at the end.
//   npm run bench                full run (3 rounds, curve points in the first; under 15 minutes), writes bench/results.md and bench/charts/
//   npm run bench -- --quick     1 round, shorter durations, writes bench/results-quick.md and bench/charts-quick/ (as does --only)
//   options: --rounds N, --only rpc,fanout,chat,portal,rpcValidation,channelWrites1,..., --cpu-prof (meshkit servers, into /tmp)
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { cpus, release, totalmem, type } from 'node:os'
import { startRedisCluster, type RedisCluster } from '../test/support/redis-cluster.js'
import { startRedisServer, type RedisProcess } from '../test/support/redis-server.js'
import { writeCharts } from './charts.js'
import { readmeCurvesMarkdown } from './curve-report.js'
import { curves } from './curves.js'
import { clientSizes, clientSizeTable } from './client-size.js'
import { finalTable, resultsMarkdown, type Samples } from './report.js'
import { fileLimits, killAllServers, processOptions, repoRoot, withTimeout, type BenchConfig, type BenchContext, type Metrics } from './support.js'
import { targets, type Target, type TargetKey } from './targets.js'
import { broadcastCost } from './workloads/broadcast-cost.js'
import { CHANNEL_WRITE_POINTS, channelWrites } from './workloads/channel-writes.js'
import { chat } from './workloads/chat.js'
import { CONNECTIONS, connections } from './workloads/connections.js'
import { fanoutClusterAwaited } from './workloads/fanout-cluster-awaited.js'
import { fanoutCluster } from './workloads/fanout-cluster.js'
import { fanout } from './workloads/fanout.js'
import { fanoutInstances, INSTANCE_COUNTS } from './workloads/fanout-instances.js'
import { fanoutRoom, ROOM_POINTS } from './workloads/fanout-room.js'
import { memory, memoryFixedYoung } from './workloads/memory.js'
import { feasible, memoryScale, SCALE_POINTS } from './workloads/memory-scale.js'
import { portal } from './workloads/portal.js'
import { PORTAL_COUNTS, portalScale } from './workloads/portal-scale.js'
import { presence } from './workloads/presence.js'
import { rpc } from './workloads/rpc.js'
import { CLIENT_POINTS, rpcClients } from './workloads/rpc-clients.js'
import { rpcValidation } from './workloads/rpc-validation.js'

type Workload = {
  name: string
  targets: TargetKey[]
  /** true: the run's one redis-server; 'cluster': the Redis Cluster (context.redisCluster()). */
  redis?: boolean | 'cluster'
  /** Measured in the first N rounds only (curve points: enough rounds for a median, and the full run stays under 15 minutes). */
  rounds?: number
  /** Longest a run may take before it counts as failed. @default 180000 */
  timeoutMs?: number
} & (
  | { run: (target: Target, context: BenchContext) => Promise<Metrics> }
  /** Measures all its targets in one go (interleaved), figures by target. */
  | { runTogether: (chosen: readonly Target[], context: BenchContext) => Promise<Partial<Record<TargetKey, Metrics>>> }
)

const workloads: Workload[] = [
  { name: 'rpc', runTogether: rpc, targets: ['raw', 'sio', 'mesh'] },
  { name: 'fanout', run: fanout, targets: ['raw', 'sio', 'mesh'] },
  { name: 'fanoutCluster', run: fanoutCluster, targets: ['sio', 'mesh'], redis: true },
  { name: 'fanoutClusterAwaited', runTogether: fanoutClusterAwaited, targets: ['sio', 'mesh'], redis: true },
  { name: 'chat', runTogether: chat, targets: ['sio', 'mesh'], redis: true },
  { name: 'memory', run: memory, targets: ['raw', 'sio', 'mesh'] },
  // A diagnostic beside workload 4 (V8's young generation fixed): one round.
  { name: 'memoryFixedYoung', run: memoryFixedYoung, targets: ['raw', 'sio', 'mesh'], rounds: 1 },
  // Socket.IO's client takes minutes for tens of thousands of connections: it runs the two smaller points.
  // One round: a round of the three points is 5–8 minutes of connects on two shared cores, and the
  // heap per connection they are judged by moves by about 1 % between rounds (docs/benchmarks.md).
  { name: 'memoryScale1k', run: memoryScale(SCALE_POINTS[0]), targets: ['raw', 'sio', 'mesh'], rounds: 1 },
  { name: 'memoryScale10k', run: memoryScale(SCALE_POINTS[1]), targets: ['raw', 'sio', 'mesh'], rounds: 1 },
  { name: 'memoryScale30k', run: memoryScale(SCALE_POINTS[2]), targets: ['raw', 'mesh'], rounds: 1, timeoutMs: 300_000 },
  { name: 'broadcastCost', run: broadcastCost, targets: ['mesh'], redis: true },
  // Two rounds: each holds 10,000 connections for 10 s (the worst round counts).
  { name: 'connections', run: connections, targets: ['mesh'], rounds: 2 },
  { name: 'portal', run: portal, targets: ['mesh'], redis: true },
  { name: 'rpcValidation', runTogether: rpcValidation, targets: ['mesh'], rounds: 2 },
  // Filling a room of 1,000 present members is ~500,000 deliveries: on busy shared cores that outlasts 180 s.
  // One round each (their figures are p50s and p99s of many operations within it): a round of both takes
  // about 50 s, and the full run must stay under 15 minutes.
  { name: 'presence', run: presence(1), targets: ['mesh'], timeoutMs: 360_000, rounds: 1 },
  { name: 'presenceCluster', run: presence(2), targets: ['mesh'], redis: true, timeoutMs: 360_000, rounds: 1 },
  // Curves 1 and 2 of issue 18 (bench/curves.ts): one round of their seven points took 135 s on the shared
  // cores at load average 2–4 (201 and 334 s at 10–17), so they run in the first round only.
  ...CLIENT_POINTS.map((clients): Workload => ({ name: `rpcClients${clients}`, runTogether: rpcClients(clients), targets: ['raw', 'sio', 'mesh'], rounds: 1 })),
  ...ROOM_POINTS.map((members): Workload => ({ name: `fanoutRoom${members}`, run: fanoutRoom(members), targets: ['raw', 'sio', 'mesh'], rounds: 1 })),
  // Curve 3: cross-instance fan-out at 1, 2, 3 instances, on one Redis and on a Redis Cluster.
  ...INSTANCE_COUNTS.map((instances): Workload => ({ name: `fanoutInstances${instances}`, runTogether: fanoutInstances(instances, 'redis'), targets: ['sio', 'mesh'], redis: true, rounds: 1 })),
  ...INSTANCE_COUNTS.map((instances): Workload => ({ name: `fanoutInstancesCluster${instances}`, runTogether: fanoutInstances(instances, 'cluster'), targets: ['mesh'], redis: 'cluster', rounds: 1 })),
  // Curve 5: 2 rounds each keep its points near a minute and a half of a full run.
  ...Object.entries(CHANNEL_WRITE_POINTS).map(([name, point]): Workload => ({ name, run: channelWrites(point), targets: ['mesh'], redis: true, rounds: 2 })),
  // Curve 6: forwarded commands and client messages through 1, 2, 3 portal processes.
  ...PORTAL_COUNTS.map((portals): Workload => ({ name: `portalScale${portals}`, run: portalScale(portals), targets: ['mesh'], redis: true, rounds: 1 })),
]

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const index = args.indexOf(name)
  return index >= 0 ? args[index + 1] : undefined
}
const quick = args.includes('--quick')
const config: BenchConfig = quick
  ? { rounds: 1, rpcSeconds: 1, fanoutRepetitions: 2, broadcasts: 50, holdSeconds: 3, chatSeconds: 2, presenceUpdates: 20 }
  : { rounds: 3, rpcSeconds: 4, fanoutRepetitions: 5, broadcasts: 200, holdSeconds: 10, chatSeconds: 3, presenceUpdates: 50 }
if (option('--rounds')) config.rounds = Number(option('--rounds'))
const only = option('--only')?.split(',')
const selected = workloads.filter((workload) => !only || only.includes(workload.name))
if (args.includes('--cpu-prof')) processOptions.cpuProfDir = '/tmp/meshkit-bench-profiles'

// Open files: the load side and the many-connections server each hold 10,000 sockets
// (30,000 in workload 13, which holds fewer where the hard limit does not allow them).
const needed = (selected.some((workload) => workload.name.startsWith('memoryScale')) ? Math.max(...SCALE_POINTS) : CONNECTIONS) + 1_000
const limits = fileLimits()
if (limits.soft < needed && limits.hard > limits.soft && !process.env.BENCH_RAISED_LIMIT) {
  // This process cannot raise its own limit: run again under a shell that does.
  const raised = Math.min(limits.hard, 65_536)
  console.log(`open files: soft limit ${limits.soft} is too low; running again with ${raised}`)
  const again = spawnSync('bash', ['-c', `ulimit -n ${raised} && exec "$0" "$@"`, process.execPath, ...process.execArgv, process.argv[1]!, ...args], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_RAISED_LIMIT: '1' },
  })
  process.exit(again.status ?? 1)
}
processOptions.fileLimit = limits.hard > limits.soft ? Math.min(limits.hard, 65_536) : 0
processOptions.openFiles = limits.soft
const limitNote = `open files: soft ${limits.soft}, hard ${limits.hard}; ${needed} needed per process for workloads 6 and 13` +
  (limits.soft < CONNECTIONS + 1_000 ? ' — NOT AVAILABLE: workload 6 will fail to hold its connections' : '') +
  (limits.soft < needed && needed > CONNECTIONS + 1_000 ? ` — workload 13's largest point holds ${feasible(Math.max(...SCALE_POINTS)).toLocaleString('en-US')} connections` : '')
console.log(limitNote)

let redis: RedisProcess | undefined
let cluster: Promise<RedisCluster> | undefined
const stopEverything = (): void => {
  killAllServers()
  redis?.child.kill('SIGKILL')
  // The cluster's nodes die with this process (--pdeathsig); stop() also removes their directory.
}
process.on('exit', stopEverything)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllServers()
    setTimeout(() => process.exit(130), 2_000).unref()
    void Promise.allSettled([redis?.stop(), cluster?.then((started) => started.stop())]).finally(() => process.exit(130))
  })
}

const samples: Samples = new Map()
const failures: string[] = []
const startedAt = Date.now()
let namespaces = 0
try {
  if (selected.some((workload) => workload.redis === true)) redis = await startRedisServer()
  const context: BenchContext = {
    config,
    redisUrl: redis?.url ?? '',
    namespace: () => `bench-${process.pid}-${++namespaces}`,
    redisCluster: async () => {
      cluster ??= startRedisCluster().then((started) => {
        console.log(`redis cluster: 3 masters + 3 replicas started in ${(started.startMs / 1000).toFixed(1)} s`)
        return started
      })
      return (await cluster).startupNodes
    },
  }
  for (let round = 1; round <= config.rounds; round++) {
    for (const workload of selected) {
      if (workload.rounds !== undefined && round > workload.rounds) continue
      // One measurement per target, or one for all targets together.
      const runs = 'run' in workload
        ? workload.targets.map((key) => ({ keys: [key], measure: async () => ({ [key]: await workload.run(targets[key], context) }) }))
        : [{ keys: workload.targets, measure: () => workload.runTogether(workload.targets.map((key) => targets[key]), context) }]
      for (const { keys, measure } of runs) {
        const label = keys.map((key) => targets[key].label).join(' + ')
        const runStarted = Date.now()
        try {
          const byTarget = await withTimeout(measure(), workload.timeoutMs ?? 180_000, `${workload.name} on ${label}`)
          for (const key of keys) {
            const metrics = byTarget[key]
            if (!metrics) throw new Error(`${workload.name} gave no figures for ${targets[key].label}`)
            for (const [metric, value] of Object.entries(metrics)) {
              const perTarget = samples.get(`${workload.name}:${metric}`) ?? {}
              ;(perTarget[key] ??= []).push(value)
              samples.set(`${workload.name}:${metric}`, perTarget)
            }
            const shown = Object.entries(metrics).map(([metric, value]) => `${metric} ${Number.isInteger(value) ? value : value.toFixed(2)}`)
            console.log(`round ${round} ${workload.name} ${targets[key].label}: ${shown.join(', ')} (${((Date.now() - runStarted) / 1000).toFixed(1)} s)`)
          }
        } catch (error) {
          killAllServers()
          const message = `round ${round} ${workload.name} ${label}: ${(error as Error).message}`
          failures.push(message)
          console.log(`FAILED ${message}`)
          const perTarget = samples.get(`${workload.name}:failed`) ?? {}
          for (const key of keys) (perTarget[key] ??= []).push(round)
          samples.set(`${workload.name}:failed`, perTarget)
        }
      }
    }
  }
} finally {
  killAllServers()
  await Promise.all([redis?.stop(), cluster?.then((started) => started.stop(), () => undefined)])
}

const seconds = (Date.now() - startedAt) / 1000
const command = `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`
const machine = `${type()} ${release()}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`
const git = (...gitArgs: string[]): string => execFileSync('git', gitArgs, { cwd: repoRoot }).toString().trim()
const dirty = git('status', '--porcelain', '--', 'src').length > 0 ? ' with uncommitted changes in src/' : ''
const revision = `meshkit at ${git('rev-parse', '--short', 'HEAD')}${dirty}`
const table = finalTable(samples)
console.log(`\n${table}\n\n${machine}; ${config.rounds} round(s) in ${seconds.toFixed(0)} s`)
// Sizes are exact, so they ride along with every run rather than being a workload with rounds.
const sizes = await clientSizes().then(clientSizeTable, (error: Error) => `## Browser client size\n\nNot measured: ${error.message}`)
console.log(`\n${sizes}`)
// Only a full run of every workload replaces the committed results and charts.
const full = !quick && !only
const charts = full ? 'charts' : 'charts-quick'
const markdown = `${resultsMarkdown({ command, machine, revision, limitNote, seconds, config, samples, failures, charts })}\n${sizes}\n`
const file = full ? 'bench/results.md' : 'bench/results-quick.md'
writeFileSync(`${repoRoot}${file}`, markdown)
const date = new Date().toISOString().slice(0, 10)
const drawn = writeCharts(`${repoRoot}bench/${charts}`, curves, samples, { machine, command, revision, date })
// The README's scale-curve section, to paste into its Benchmarks section after a full run.
const readme = `<!-- Written by npm run bench: paste into README.md's Benchmarks section. -->\n${readmeCurvesMarkdown({ curves, command, machine, revision, date, samples, charts: `bench/${charts}` })}`
writeFileSync(`${repoRoot}bench/${charts}/readme-section.md`, readme)
console.log(`written to ${file}; charts and readme-section.md to bench/${charts}/ (${drawn.join(', ') || 'no curve measured'})`)
process.exit(failures.length > 0 ? 1 : 0)
