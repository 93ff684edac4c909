// Issue 17: meshkit on one Redis against meshkit on a 3-master Redis Cluster (with a
// replica each), both started here on loopback, measured in alternating turns:
//
// 1. Cross-instance fan-out as users write it: two meshkit server processes, 200 members
//    split between them, one request makes the first await 300 `broadcastRoom`s in turn.
// 2. Channel writes with history (`writeChannel`, historyLimit 100) from 100 concurrent
//    writers, on 1 channel (one slot: one master either way) and on 100 channels (spread
//    over the three masters in the cluster).
// 3. Where the pub/sub traffic goes: during the cluster's fan-out, the `SPUBLISH`es each
//    master ran and the bytes it sent (`INFO commandstats`, `INFO stats`), and the cluster
//    bus's publish messages (`CLUSTER INFO`). Beside it, the same 20,000 messages sent by
//    plain ioredis with classic `PUBLISH` and with `SPUBLISH`, to show what sharding saves:
//    a classic publish is forwarded to every node of the cluster, a sharded one stays in
//    its shard.
//
//   npm run bench:cluster                 3 rounds, writes bench/results-cluster.md
//   npm run bench:cluster -- --rounds 1
import { writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { Cluster, Redis } from 'ioredis'
import { startRedisCluster, type RedisCluster } from '../test/support/redis-cluster.js'
import { startRedisServer } from '../test/support/redis-server.js'
import { killAllServers, markdownTable, median, withServers, type ServerProcess } from './support.js'
import { closeAll, connectMany, targets, type BenchClient } from './targets.js'
import { broadcaster, joinRoom, MEMBERS, MESSAGES } from './workloads/fanout.js'

const args = process.argv.slice(2)
const rounds = Number(args[args.indexOf('--rounds') + 1] || 3) || 3
const WRITERS = 100
const WRITES = 10_000
const mesh = targets.mesh

type Backend = 'one Redis' | 'cluster'
interface NodeCounters {
  port: number
  spublish: number
  publish: number
  netOutput: number
  busPublish: number
  busPublishShard: number
}

const field = (text: string, name: string): number => Number(new RegExp(`${name}:(\\d+)`).exec(text)?.[1] ?? 0)
const calls = (text: string, command: string): number => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(text)?.[1] ?? 0)

async function countersOf(port: number): Promise<NodeCounters> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
  try {
    await redis.connect()
    const [commandstats, stats, clusterInfo] = await Promise.all([redis.info('commandstats'), redis.info('stats'), redis.cluster('INFO') as Promise<string>])
    return {
      port,
      spublish: calls(commandstats, 'spublish'),
      publish: calls(commandstats, 'publish'),
      netOutput: field(stats, 'total_net_output_bytes'),
      busPublish: field(clusterInfo, 'cluster_stats_messages_publish_sent') + field(clusterInfo, 'cluster_stats_messages_publish_received'),
      busPublishShard: field(clusterInfo, 'cluster_stats_messages_publishshard_sent') + field(clusterInfo, 'cluster_stats_messages_publishshard_received'),
    }
  } finally {
    redis.disconnect()
  }
}

async function snapshot(cluster: RedisCluster): Promise<Map<number, NodeCounters>> {
  const alive = cluster.nodes.filter((node) => node.alive)
  return new Map((await Promise.all(alive.map((node) => countersOf(node.port)))).map((counters) => [counters.port, counters]))
}

function difference(before: Map<number, NodeCounters>, after: Map<number, NodeCounters>): NodeCounters[] {
  return [...after.values()].map((now) => {
    const then = before.get(now.port)!
    return {
      port: now.port,
      spublish: now.spublish - then.spublish,
      publish: now.publish - then.publish,
      netOutput: now.netOutput - then.netOutput,
      busPublish: now.busPublish - then.busPublish,
      busPublishShard: now.busPublishShard - then.busPublishShard,
    }
  })
}

/** Two meshkit instances on `redis`, 200 members split between them, awaited fan-out: deliveries/s of each repetition. */
async function fanout(env: Record<string, string>, repetitions: number, during?: () => Promise<() => Promise<void>>): Promise<number[]> {
  return withServers([{ script: mesh.script, env }, { script: mesh.script, env }], async ([first, second]: ServerProcess[]) => {
    const opened: BenchClient[] = []
    try {
      const members = [...(await connectMany(mesh, first!.port, MEMBERS / 2)), ...(await connectMany(mesh, second!.port, MEMBERS / 2))]
      const [trigger] = await connectMany(mesh, first!.port, 1)
      opened.push(...members, trigger!)
      await joinRoom(members, 'room')
      const broadcast = broadcaster(trigger!, members, 'room', 'fanoutAwaited')
      await broadcast(MESSAGES) // warm-up
      const finish = await during?.()
      const rates: number[] = []
      for (let repetition = 0; repetition < repetitions; repetition++) rates.push((MEMBERS * MESSAGES) / ((await broadcast(MESSAGES)) / 1000))
      await finish?.()
      return rates
    } finally {
      await closeAll(opened)
    }
  })
}

/** One meshkit instance on `redis`: writes/s of `WRITES` channel writes from `WRITERS` writers over `channels` channels. */
async function channelWrites(env: Record<string, string>, channels: number): Promise<number> {
  return withServers([{ script: mesh.script, env }], async ([server]: ServerProcess[]) => {
    await server!.control(`channel-writes ${WRITERS} ${channels} 1000`) // warm-up
    const { ms } = await server!.control<{ ms: number }>(`channel-writes ${WRITERS} ${channels} ${WRITES}`)
    return WRITES / (ms / 1000)
  })
}

/** The same messages with classic PUBLISH and with SPUBLISH on the cluster, one subscriber each: per-node counters. */
async function classicAgainstSharded(cluster: RedisCluster, messages: number): Promise<Record<'classic' | 'sharded', NodeCounters[]>> {
  const nodes = [...cluster.startupNodes]
  const publisher = new Cluster(nodes)
  const subscriber = new Cluster(nodes, { shardedSubscribers: true })
  const classicSubscriber = new Cluster(nodes)
  const payload = 'x'.repeat(100)
  const run = async (publish: (i: number) => Promise<unknown>, subscribed: Cluster, event: string): Promise<NodeCounters[]> => {
    let received = 0
    const done = new Promise<void>((resolve) => subscribed.on(event, () => ++received === messages && resolve()))
    const before = await snapshot(cluster)
    for (let sent = 0; sent < messages; sent += 500) await Promise.all(Array.from({ length: 500 }, (_, i) => publish(sent + i)))
    await done
    return difference(before, await snapshot(cluster))
  }
  try {
    await classicSubscriber.subscribe('bench:classic')
    await subscriber.ssubscribe('bench:{sharded}')
    const classic = await run(() => publisher.publish('bench:classic', payload), classicSubscriber, 'message')
    const sharded = await run(() => publisher.spublish('bench:{sharded}', payload), subscriber, 'smessage')
    return { classic, sharded }
  } finally {
    for (const client of [publisher, subscriber, classicSubscriber]) client.disconnect()
  }
}

const fmt = (value: number, digits = 0): string => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

async function main(): Promise<void> {
  const single = await startRedisServer()
  const cluster = await startRedisCluster()
  let namespaces = 0
  const envOf = (backend: Backend): Record<string, string> => ({
    BENCH_NAMESPACE: `bench-cluster-${Date.now()}-${namespaces++}`,
    ...(backend === 'cluster' ? { BENCH_REDIS_CLUSTER: cluster.startupNodes.map(({ host, port }) => `${host}:${port}`).join(',') } : { BENCH_REDIS_URL: single.url }),
  })
  const results: Record<Backend, { fanout: number[]; oneChannel: number[]; manyChannels: number[] }> = {
    'one Redis': { fanout: [], oneChannel: [], manyChannels: [] },
    cluster: { fanout: [], oneChannel: [], manyChannels: [] },
  }
  let traffic: NodeCounters[] = []
  try {
    for (let round = 0; round < rounds; round++) {
      const order: Backend[] = round % 2 === 0 ? ['one Redis', 'cluster'] : ['cluster', 'one Redis']
      for (const backend of order) {
        const watch = backend === 'cluster' && round === 0
          ? async () => {
              const before = await snapshot(cluster)
              return async () => void (traffic = difference(before, await snapshot(cluster)))
            }
          : undefined
        results[backend].fanout.push(median(await fanout(envOf(backend), 3, watch)))
        results[backend].oneChannel.push(await channelWrites(envOf(backend), 1))
        results[backend].manyChannels.push(await channelWrites(envOf(backend), 100))
        console.log(`round ${round + 1} ${backend}: fan-out ${fmt(results[backend].fanout.at(-1)!)} deliveries/s, writes ${fmt(results[backend].oneChannel.at(-1)!)}/s (1 channel), ${fmt(results[backend].manyChannels.at(-1)!)}/s (100 channels)`)
      }
    }
    const compared = await classicAgainstSharded(cluster, 20_000)
    const masters = new Set(cluster.nodes.filter((node) => node.role === 'master').map((node) => node.port))
    const role = (port: number): string => (masters.has(port) ? 'master' : 'replica')
    const row = (label: string, pick: (r: (typeof results)[Backend]) => number[]): string[] => {
      const one = median(pick(results['one Redis']))
      const many = median(pick(results.cluster))
      return [label, fmt(one), fmt(many), `${fmt(many / one, 2)}×`]
    }
    const report = [
      '# meshkit on one Redis and on a Redis Cluster',
      '',
      `\`npm run bench:cluster -- --rounds ${rounds}\`, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}.`,
      'Every Redis process, both meshkit instances and the load share the machine; medians of the rounds, the backends taking turns.',
      '',
      markdownTable(['', 'one Redis', '3-master cluster', 'cluster ÷ one'], [
        row('cross-instance fan-out, deliveries/s (2 instances, 200 members, awaited broadcastRoom)', (r) => r.fanout),
        row(`channel writes/s, ${WRITERS} writers, 1 channel`, (r) => r.oneChannel),
        row(`channel writes/s, ${WRITERS} writers, 100 channels`, (r) => r.manyChannels),
      ]),
      '',
      `## Per node, during the cluster's first fan-out (${3 * MESSAGES} broadcasts to one room)`,
      '',
      markdownTable(['node', 'role', 'SPUBLISH run', 'PUBLISH run', 'bytes sent', 'cluster-bus publish messages'],
        traffic.map((node) => [String(node.port), role(node.port), fmt(node.spublish), fmt(node.publish), fmt(node.netOutput), fmt(node.busPublish + node.busPublishShard)])),
      '',
      '## 20,000 messages of 100 bytes, one subscriber: classic PUBLISH against SPUBLISH on the same cluster',
      '',
      markdownTable(['node', 'role', 'classic: bytes sent', 'classic: cluster-bus publish messages', 'sharded: bytes sent', 'sharded: cluster-bus publish messages'],
        compared.classic.map((node, index) => {
          const sharded = compared.sharded[index]!
          return [String(node.port), role(node.port), fmt(node.netOutput), fmt(node.busPublish), fmt(sharded.netOutput), fmt(sharded.busPublishShard)]
        })),
      '',
    ].join('\n')
    writeFileSync(new URL('./results-cluster.md', import.meta.url), report)
    console.log(`\n${report}`)
  } finally {
    killAllServers()
    await Promise.all([single.stop(), cluster.stop()])
  }
}

await main()
