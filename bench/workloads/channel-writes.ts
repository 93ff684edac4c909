// 14. Channel writes with history (issue 18, curve 5; meshkit only, one instance on the
// bench's Redis): `server.writeChannel(…, 100)` from 1, 10 and 100 concurrent writers,
// each awaiting its write before the next (bench/servers/meshkit.ts, `channel-writes`),
// on one channel, and 100 writers over 100 channels. One workload per point. Beside each
// point, the ceiling of the same Redis in the same run, from one ioredis connection in
// this process: pipelined PUBLISH of a message as large as a channel entry (offset,
// colon, msgpack), and pipelined EVALSHA of a script that returns 1. Each ceiling is the
// mean of a measurement before and one after meshkit's, so that drift of other load on
// the shared cores does not pass for a difference. Cost per write: the server's CPU
// (process.cpuUsage in the server) and Redis's (INFO cpu), over the measured writes.
import { Redis } from 'ioredis'
import { performance } from 'node:perf_hooks'
import type { Curve } from '../curves.js'
import { withServers, type BenchContext, type Metrics } from '../support.js'
import type { Target } from '../targets.js'

/** An entry as meshkit publishes it: a 16-digit offset, a colon and msgpack of `{ n, text: 'hello, channel' }`. */
const ENTRY_BYTES = 16 + 1 + 26
/** Commands per pipeline of the ceilings; all pipelines are sent at once. */
const PIPELINE = 1_000

export interface ChannelWritePoint {
  writers: number
  channels: number
  /** Writes measured; `--quick` measures a quarter. */
  writes: number
}

/** Commands/s of `count` commands added by `add`, in pipelines of PIPELINE, all in flight together. */
async function pipelined(redis: Redis, count: number, add: (pipeline: ReturnType<Redis['pipeline']>) => void): Promise<number> {
  const startedAt = performance.now()
  const batches: Array<Promise<unknown>> = []
  for (let sent = 0; sent < count; sent += PIPELINE) {
    const pipeline = redis.pipeline()
    for (let i = 0; i < Math.min(PIPELINE, count - sent); i++) add(pipeline)
    batches.push(pipeline.exec())
  }
  await Promise.all(batches)
  return count / ((performance.now() - startedAt) / 1000)
}

async function ceilings(redis: Redis, topic: string, sha: string, count: number): Promise<{ publish: number; evalsha: number }> {
  const payload = Buffer.alloc(ENTRY_BYTES, 0x61)
  const publish = await pipelined(redis, count, (pipeline) => pipeline.publish(topic, payload))
  const evalsha = await pipelined(redis, count, (pipeline) => pipeline.evalsha(sha, 0))
  return { publish, evalsha }
}

/** Redis's CPU seconds so far (user + system), from INFO cpu. */
async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu')
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN)
  return field('used_cpu_user') + field('used_cpu_sys')
}

export function channelWrites(point: ChannelWritePoint) {
  return async (target: Target, context: BenchContext): Promise<Metrics> => {
    // --quick (holds of 3 s instead of 10): a quarter of the writes and commands.
    const share = context.config.holdSeconds < 10 ? 0.25 : 1
    const writes = point.writes * share
    const ceilingCount = 20_000 * share
    const namespace = context.namespace()
    const redis = new Redis(context.redisUrl)
    try {
      const sha = (await redis.script('LOAD', 'return 1')) as string
      const topic = `${namespace}:channel:{feed-0}`
      await ceilings(redis, topic, sha, ceilingCount / 4) // warm-up
      const before = await ceilings(redis, topic, sha, ceilingCount)
      const metrics: Metrics = {}
      await withServers([{ script: target.script, env: { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: namespace } }], async ([server]) => {
        await server!.control(`channel-writes ${point.writers} ${point.channels} ${Math.min(writes, 2_000)}`) // warm-up
        const redisBefore = await redisCpuSeconds(redis)
        const { ms, cpuUs, p50Us } = await server!.control<{ ms: number; cpuUs: number; p50Us: number }>(`channel-writes ${point.writers} ${point.channels} ${writes}`)
        metrics.writesPerSec = writes / (ms / 1000)
        metrics.serverUsPerWrite = cpuUs / writes
        metrics.redisUsPerWrite = ((await redisCpuSeconds(redis)) - redisBefore) * 1e6 / writes
        metrics.p50Us = p50Us
      })
      const after = await ceilings(redis, topic, sha, ceilingCount)
      metrics.publishCeiling = (before.publish + after.publish) / 2
      metrics.evalshaCeiling = (before.evalsha + after.evalsha) / 2
      metrics.overPublish = metrics.writesPerSec! / metrics.publishCeiling
      metrics.overEvalsha = metrics.writesPerSec! / metrics.evalshaCeiling
      return metrics
    } finally {
      redis.disconnect()
    }
  }
}

/** The points of curve 5, by workload name in run.ts. */
export const CHANNEL_WRITE_POINTS = {
  channelWrites1: { writers: 1, channels: 1, writes: 4_000 },
  channelWrites10: { writers: 10, channels: 1, writes: 12_000 },
  channelWrites100: { writers: 100, channels: 1, writes: 40_000 },
  channelWrites100c: { writers: 100, channels: 100, writes: 20_000 },
} satisfies Record<string, ChannelWritePoint>

export const channelWritesCurve: Curve = {
  id: 'channel-writes',
  number: 5,
  title: 'Channel writes with history (historyLimit 100) as concurrent writers grow, beside the same Redis’s ceiling',
  x: { label: 'concurrent writers (each awaiting its write)', log: true },
  y: { label: 'writes/s', log: true },
  points: [
    { x: 1, workload: 'channelWrites1' },
    { x: 10, workload: 'channelWrites10' },
    { x: 100, workload: 'channelWrites100' },
  ],
  series: [
    { label: 'meshkit writeChannel, one channel', target: 'mesh', metric: 'writesPerSec' },
    { label: 'meshkit writeChannel, 100 writers over 100 channels', target: 'mesh', metric: 'writesPerSec', points: [{ x: 100, workload: 'channelWrites100c' }] },
    { label: 'ceiling: pipelined PUBLISH, one ioredis connection', target: 'mesh', metric: 'publishCeiling' },
    { label: 'ceiling: pipelined EVALSHA of `return 1`, one ioredis connection', target: 'mesh', metric: 'evalshaCeiling' },
  ],
  secondary: {
    y: { label: 'CPU µs per write' },
    series: [
      { label: 'meshkit server', target: 'mesh', metric: 'serverUsPerWrite' },
      { label: 'Redis', target: 'mesh', metric: 'redisUsPerWrite' },
    ],
  },
  flatness: [
    { label: 'server CPU µs per write', target: 'mesh', metric: 'serverUsPerWrite', lowerIsBetter: true, knee:
        'Falls as writers grow (lower is better): one awaited writer is latency-bound, not cost-bound. Each of its writes is a round trip of its own, ' +
        'so the server pays a whole event-loop wake-up per write (epoll, read and write syscalls, the reply parse) that 10 or 100 writers share, ' +
        'and on one channel their writes leave as batches of up to 256 per script call. 100 writers over 100 channels do not batch ' +
        '(one call per write, sent side by side): their cost per write sits between 10 and 100 writers on one channel.' },
    { label: 'Redis CPU µs per write', target: 'mesh', metric: 'redisUsPerWrite', lowerIsBetter: true, knee:
        'Falls as writers grow: every script call pays the epoch rule (INFO replication, EXISTS, GET) and a wake-up of Redis; ' +
        'a batch pays them once for up to 256 messages, so only the LPUSH, LTRIM and PUBLISH of each message remain per write.' },
  ],
}
