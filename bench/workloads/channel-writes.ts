// 14. Channel writes with history (issue 18, curve 5; meshkit only, one instance on the
// bench's Redis): writes/s of `server.writeChannel(…, 100)` from 1, 10 and 100
// concurrent writers, each awaiting its write before the next (bench/servers/meshkit.ts,
// `channel-writes`), on one channel and, at 100 writers, over 100 channels. Beside them,
// the ceiling of the same Redis in the same run, from one ioredis connection in this
// process: pipelined PUBLISH of a message as large as a channel entry (offset, colon,
// msgpack), and pipelined EVALSHA of a script that returns 1. Each ceiling is the mean of
// a measurement before and one after meshkit's, so that drift of other load on the
// shared cores does not pass for a difference. Ratios are writes/s over the PUBLISH ceiling.
import { Redis } from 'ioredis'
import { performance } from 'node:perf_hooks'
import { withServers, type BenchContext, type Metrics } from '../support.js'
import type { Target } from '../targets.js'

/** An entry as meshkit publishes it: a 16-digit offset, a colon and msgpack of `{ n, text: 'hello, channel' }`. */
const ENTRY_BYTES = 16 + 1 + 26
/** Commands per pipeline of the ceilings; all pipelines are sent at once. */
const PIPELINE = 1_000

const POINTS = [
  { name: 'w1', writers: 1, channels: 1, writes: 2_000 },
  { name: 'w10', writers: 10, channels: 1, writes: 10_000 },
  { name: 'w100', writers: 100, channels: 1, writes: 20_000 },
  { name: 'w100c100', writers: 100, channels: 100, writes: 20_000 },
] as const

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

export async function channelWrites(target: Target, context: BenchContext): Promise<Metrics> {
  const namespace = context.namespace()
  const redis = new Redis(context.redisUrl)
  try {
    const sha = (await redis.script('LOAD', 'return 1')) as string
    const topic = `${namespace}:channel:{feed-0}`
    const ceilingCount = 50_000
    await ceilings(redis, topic, sha, ceilingCount) // warm-up
    const before = await ceilings(redis, topic, sha, ceilingCount)
    const metrics: Metrics = {}
    await withServers([{ script: target.script, env: { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: namespace } }], async ([server]) => {
      await server!.control('channel-writes 100 1 2000') // warm-up
      for (const point of POINTS) {
        const { ms } = await server!.control<{ ms: number }>(`channel-writes ${point.writers} ${point.channels} ${point.writes}`)
        metrics[point.name] = point.writes / (ms / 1000)
      }
    })
    const after = await ceilings(redis, topic, sha, ceilingCount)
    const publish = (before.publish + after.publish) / 2
    const evalsha = (before.evalsha + after.evalsha) / 2
    metrics.publishCeiling = publish
    metrics.evalshaCeiling = evalsha
    for (const point of POINTS) metrics[`${point.name}OverPublish`] = metrics[point.name]! / publish
    metrics.w100OverEvalsha = metrics.w100! / evalsha
    return metrics
  } finally {
    redis.disconnect()
  }
}
