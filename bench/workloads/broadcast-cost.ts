// 5. Broadcast cost vs cluster size (meshkit only, two instances on Redis): end-to-end
// time of broadcastRoom to a 10-member room (5 on each instance) with no other
// connection in the cluster, then with 5,000 idle ones, then with none again; the time
// without is the mean of before and after, so that drift does not pass for a difference.
// Each time is the best of 5 blocks' medians of 200 broadcasts (~0.1 s a block), so that
// another process waking up on the shared cores does not pass for one either.
import { median, sleep, waitUntil, withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'
import { broadcaster, joinRoom } from './fanout.js'

const MEMBERS_PER_INSTANCE = 5
const BYSTANDERS = 5_000
/** Broadcasts run this long before each measurement; the first needs ~2 s to settle. */
const WARM_UP_MS = [3_000, 1_000, 1_000] as const
/**
 * Heartbeats every minute: the bystanders are idle while 200 back-to-back broadcasts
 * (~0.1 s) are timed. With the default 5 s latency interval, a heartbeat sweep over
 * 2,500 connections would land in some measurements and not others; what heartbeats
 * cost with many connections is workload 6's subject.
 */
const quietHeartbeat = { BENCH_PING_INTERVAL: '60000', BENCH_LATENCY_INTERVAL: '60000' }
const BLOCKS = 5

export async function broadcastCost(target: Target, context: BenchContext): Promise<Metrics> {
  const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace(), ...quietHeartbeat }
  return withServers([{ script: target.script, env }, { script: target.script, env }], async (servers) => {
    const members: BenchClient[] = []
    const bystanders: BenchClient[] = []
    const triggers: BenchClient[] = []
    try {
      for (const server of servers) members.push(...(await connectMany(target, server.port, MEMBERS_PER_INSTANCE)))
      triggers.push(...(await connectMany(target, servers[0]!.port, 1)))
      await joinRoom(members, 'ten')
      const broadcast = broadcaster(triggers[0]!, members, 'ten')
      const timeBroadcasts = async (warmUpMs: number): Promise<number> => {
        const warmUntil = Date.now() + warmUpMs
        while (Date.now() < warmUntil) await broadcast(1)
        const blocks: number[] = []
        for (let block = 0; block < BLOCKS; block++) {
          const times: number[] = []
          for (let i = 0; i < context.config.broadcasts; i++) times.push(await broadcast(1))
          blocks.push(median(times))
        }
        return Math.min(...blocks)
      }
      const before = await timeBroadcasts(WARM_UP_MS[0])
      for (const server of servers) {
        const joined = await connectMany(target, server.port, BYSTANDERS / servers.length)
        bystanders.push(...joined)
        // Idle, but not bare: spread over 100 rooms of their own.
        await Promise.all(joined.map((client, index) => client.call('join', `idle-${index % 100}`)))
      }
      const crowded = await timeBroadcasts(WARM_UP_MS[1])
      await closeAll(bystanders.splice(0))
      const expected = [MEMBERS_PER_INSTANCE + 1, MEMBERS_PER_INSTANCE] // the trigger is on the first
      const gone = await waitUntil(async () => {
        const counts = await Promise.all(servers.map((server) => server.control('connections')))
        return counts.every((count, index) => count.connections === expected[index])
      }, 20_000)
      if (!gone) throw new Error('the bystanders did not leave the cluster')
      await sleep(500)
      const after = await timeBroadcasts(WARM_UP_MS[2])
      const alone = (before + after) / 2
      return { aloneMs: alone, beforeMs: before, afterMs: after, crowdedMs: crowded, ratio: crowded / alone }
    } finally {
      await closeAll([...members, ...triggers, ...bystanders])
    }
  })
}
