// 3. Room fan-out across two instances on one Redis: the 200 clients split between two
// server processes of the same target; the broadcast is started on the first.
import type { BenchContext, Metrics } from '../support.js'
import type { Target } from '../targets.js'
import { fanoutAcross } from './fanout.js'

export function fanoutCluster(target: Target, context: BenchContext): Promise<Metrics> {
  const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() }
  return fanoutAcross(target, [{ script: target.script, env }, { script: target.script, env }], context)
}
