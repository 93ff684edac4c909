// Cost of `metrics: true`: the RPC and fan-out workloads of `npm run bench`, each run
// with metrics off and on, A/B in the same rounds. RPC measures both servers together,
// interleaved in 0.5 s slices (see workloads/rpc.ts); fan-out alternates which goes
// first every round. Ratios are on ÷ off per round (1.00 = no cost; for RPC, server CPU
// per round trip is the figure least moved by other load on shared cores), then the
// median over rounds. First, in this process, what the instruments themselves cost per
// call (the least noisy figure on shared cores: no sockets, no other process).
//   npx tsx bench/metrics-cost.ts              (ROUNDS=5 by default)
//   ROUNDS=9 RPC_SECONDS=4 npx tsx bench/metrics-cost.ts
import { cpus } from 'node:os'
import { PrometheusMetrics } from '../src/server/prometheus-metrics.js'
import { killAllServers, median, withTimeout, type BenchConfig, type BenchContext, type Metrics } from './support.js'
import { targets } from './targets.js'
import { fanout } from './workloads/fanout.js'
import { rpc } from './workloads/rpc.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const config: BenchConfig = { rounds: ROUNDS, rpcSeconds: Number(process.env.RPC_SECONDS ?? 3), fanoutRepetitions: 5, broadcasts: 0, holdSeconds: 0, chatSeconds: 0, presenceUpdates: 0 }
const context: BenchContext = { config, redisUrl: '', namespace: () => 'unused', redisCluster: () => Promise.reject(new Error('no cluster here')) }
const off = targets.mesh
const on = targets.meshMetrics

/** Nanoseconds per call of `body`, the best of 5 runs of a million. */
function nsPerCall(body: () => void): number {
  let best = Infinity
  for (let run = 0; run < 5; run++) {
    const started = performance.now()
    for (let i = 0; i < 1_000_000; i++) body()
    best = Math.min(best, performance.now() - started)
  }
  return best
}
const instruments = new PrometheusMetrics(true, {})
instruments.read({ connections: () => 0, redeliveryQueue: () => 0, portalBacklog: () => undefined, knowsCommand: () => true })
const frame = new Uint8Array(40)
const perCommand = nsPerCall(() => {
  const started = instruments.now()
  instruments.commandDone('echo', 'ok', instruments.now() - started)
})
const perEvent = nsPerCall(() => instruments.eventWritten(frame))
console.log(`instruments: ${perCommand.toFixed(0)} ns per command (two clock reads and the histogram), ${perEvent.toFixed(1)} ns per event written\n`)

const ratios = { rpcRate: [] as number[], rpcServerCpu: [] as number[], rpcP50: [] as number[], fanoutRate: [] as number[] }
const show = (value: number): string => value.toFixed(3)

try {
  for (let round = 1; round <= ROUNDS; round++) {
    const byTarget = await withTimeout(rpc([off, on], context), 180_000, 'rpc')
    const [a, b] = [byTarget.mesh!, byTarget.meshMetrics!]
    ratios.rpcRate.push(b.rps! / a.rps!)
    ratios.rpcServerCpu.push(b.serverCpuUs! / a.serverCpuUs!)
    ratios.rpcP50.push(b.p50! / a.p50!)
    const order = round % 2 === 1 ? [off, on] : [on, off]
    const fan: Record<string, Metrics> = {}
    for (const target of order) fan[target.key] = await withTimeout(fanout(target, context), 180_000, `fanout ${target.label}`)
    ratios.fanoutRate.push(fan.meshMetrics!.deliveriesPerSecond! / fan.mesh!.deliveriesPerSecond!)
    console.log(
      `round ${round}: rpc ${a.rps!.toFixed(0)} → ${b.rps!.toFixed(0)} round trips/s (×${show(ratios.rpcRate.at(-1)!)}), ` +
        `server CPU ${a.serverCpuUs!.toFixed(1)} → ${b.serverCpuUs!.toFixed(1)} µs/call (×${show(ratios.rpcServerCpu.at(-1)!)}); ` +
        `fanout ${fan.mesh!.deliveriesPerSecond!.toFixed(0)} → ${fan.meshMetrics!.deliveriesPerSecond!.toFixed(0)} deliveries/s (×${show(ratios.fanoutRate.at(-1)!)})`,
    )
  }
} finally {
  killAllServers()
}

console.log(`\nmetrics on ÷ off, median of ${ROUNDS} rounds (${cpus().length} cores, Node ${process.version}):`)
console.log(`  rpc round trips/s        ×${show(median(ratios.rpcRate))}   (higher is better)`)
console.log(`  rpc server CPU per call  ×${show(median(ratios.rpcServerCpu))}   (lower is better)`)
console.log(`  rpc p50 latency          ×${show(median(ratios.rpcP50))}   (lower is better)`)
console.log(`  fanout deliveries/s      ×${show(median(ratios.fanoutRate))}   (higher is better)`)
