// What RedisStore's cluster layout costs (issue 17): the same store calls on one Redis
// and on a local Redis Cluster (3 masters + 3 replicas, all on this machine), with the
// cluster client's auto-pipelining on (what RedisStore's fan-out reads rely on) and off.
// Medians of ROUNDS runs, and the ratio to one Redis. Loopback only: a real network's
// round trips make the split writes' extra round trips count for more.
// Run: npx tsx bench/store-cluster.ts
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import { Cluster, Redis } from 'ioredis'
import { Keys } from '../src/server/store/keys.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { startRedisCluster } from '../test/support/redis-cluster.js'
import { startRedisServer } from '../test/support/redis-server.js'

const IDS = Number(process.env.IDS ?? 1_000)
const ROUNDS = Number(process.env.ROUNDS ?? 15)
const LIFECYCLES = Number(process.env.LIFECYCLES ?? 300)

async function median(run: () => Promise<unknown>): Promise<number> {
  const times: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    const started = performance.now()
    await run()
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return times[Math.floor(times.length / 2)]!
}

/** Fills a store with IDS connections over 3 instances, each with metadata, then measures. */
async function measure(store: RedisStore): Promise<Record<string, number>> {
  const ids = Array.from({ length: IDS }, (_, index) => `c${index}`)
  await Promise.all(ids.map((id, index) => store.addConnection(id, `i${index % 3}`)))
  await Promise.all(ids.map((id) => store.setMetadata(id, `{"n":"${id}"}`)))
  let lifecycle = 0
  return {
    [`getConnectionInstances(${IDS})`]: await median(() => store.getConnectionInstances(ids)),
    [`getMetadata(${IDS})`]: await median(() => store.getMetadata(ids)),
    [`getAllMetadata (${IDS})`]: await median(() => store.getAllMetadata()),
    // One connection's life, one after another: register, authenticate, join 2 rooms, leave.
    [`${LIFECYCLES} sequential lifecycles`]: await median(async () => {
      for (let n = 0; n < LIFECYCLES; n++) {
        const id = `life${lifecycle++}`
        await store.addConnection(id, 'i0')
        await store.addUserConnection(`u${n % 50}`, id, true)
        await store.addToRoom('lobby', id)
        await store.addToRoom(`room${n % 20}`, id)
        await store.removeConnection(id)
      }
    }),
  }
}

async function clusterStore(startupNodes: ReadonlyArray<{ host: string; port: number }>, enableAutoPipelining: boolean, namespace: string): Promise<RedisStore> {
  const client = new Cluster([...startupNodes], { enableAutoPipelining, enableOfflineQueue: false, redisOptions: { commandTimeout: 5_000 } })
  if (client.status !== 'ready') await once(client, 'ready')
  return new RedisStore(client, new Keys(namespace))
}

const single = await startRedisServer()
const cluster = await startRedisCluster()
try {
  const one = new Redis(single.url)
  const results = {
    'one Redis': await measure(new RedisStore(one, new Keys('bench-one'))),
    'cluster, auto-pipelining': await measure(await clusterStore(cluster.startupNodes, true, 'bench-auto')),
    'cluster, no auto-pipelining': await measure(await clusterStore(cluster.startupNodes, false, 'bench-plain')),
  }
  const baseline = results['one Redis']
  for (const [setup, times] of Object.entries(results)) {
    console.log(`\n${setup}`)
    for (const [name, ms] of Object.entries(times)) console.log(`  ${name.padEnd(34)} ${ms.toFixed(1).padStart(8)} ms  ×${(ms / baseline[name]!).toFixed(2)}`)
  }
} finally {
  await cluster.stop()
  await single.stop()
  process.exit(0)
}
