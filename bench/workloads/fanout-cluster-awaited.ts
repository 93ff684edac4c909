// 7. Workload 3 as users write it (issue 11): the server's handler awaits each
// broadcastRoom before the next (`for (...) await server.broadcastRoom(...)`, as the Mesh
// README shows), so every broadcast's cost before it is published is paid in turn instead
// of overlapping. Socket.IO's `io.to(room).emit` returns nothing to await: its server runs
// the same loop as in workload 3, which is exactly what its users write.
import type { BenchContext, Metrics } from '../support.js'
import type { Target } from '../targets.js'
import { fanoutAcross } from './fanout.js'

export function fanoutClusterAwaited(target: Target, context: BenchContext): Promise<Metrics> {
  const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() }
  return fanoutAcross(target, [{ script: target.script, env }, { script: target.script, env }], context, 'fanoutAwaited')
}
