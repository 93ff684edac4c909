// 3. Room fan-out across two instances on one Redis: the 200 clients split between two
// server processes of the same target; the broadcast is started on the first.
import { withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type Target } from '../targets.js'
import { MEMBERS, joinRoom, measureFanout } from './fanout.js'

export async function fanoutCluster(target: Target, context: BenchContext): Promise<Metrics> {
  const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() }
  return withServers([{ script: target.script, env }, { script: target.script, env }], async ([first, second]) => {
    const members = [
      ...(await connectMany(target, first!.port, MEMBERS / 2)),
      ...(await connectMany(target, second!.port, MEMBERS / 2)),
    ]
    const [trigger] = await connectMany(target, first!.port, 1)
    try {
      await joinRoom(members)
      return await measureFanout(trigger!, members, context.config.fanoutRepetitions)
    } finally {
      await closeAll([...members, trigger!])
    }
  })
}
