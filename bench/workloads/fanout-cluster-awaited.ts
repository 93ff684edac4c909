// 7. Workload 3 as users write it (issue 11): the server's handler awaits each
// broadcastRoom before the next (`for (...) await server.broadcastRoom(...)`, as the Mesh
// README shows), so every broadcast's cost before it is published is paid in turn instead
// of overlapping. Socket.IO's `io.to(room).emit` returns nothing to await: its server runs
// the same loop as in workload 3, which is exactly what its users write.
//
// The targets are measured together: both targets' two instances run side by side (on
// one Redis, each target in its own namespace) and their fan-outs take turns, the order
// rotating every repetition, so that a change in outside load on the shared cores reaches
// both alike. meshkit's ratio of a round is also given as the median of its ratios to the
// other target's fan-out of the same repetition.
import { median, type BenchContext, type Metrics } from '../support.js'
import { connectMany, type Target, type TargetKey } from '../targets.js'
import { broadcaster, joinRoom, MEMBERS, MESSAGES, withInstancePairs } from './fanout.js'

const ROOM = 'room'

export function fanoutClusterAwaited(chosen: readonly Target[], context: BenchContext): Promise<Partial<Record<TargetKey, Metrics>>> {
  return withInstancePairs(chosen, context, async (pairs, opened) => {
    const broadcasts: Array<(count: number) => Promise<number>> = []
    for (const [index, target] of chosen.entries()) {
      const [first, second] = pairs[index]!
      const members = [...(await connectMany(target, first.port, MEMBERS / 2)), ...(await connectMany(target, second.port, MEMBERS / 2))]
      const [trigger] = await connectMany(target, first.port, 1)
      opened.push(...members, trigger!)
      await joinRoom(members, ROOM)
      broadcasts.push(broadcaster(trigger!, members, ROOM, 'fanoutAwaited'))
    }
    for (const broadcast of broadcasts) await broadcast(MESSAGES) // warm-up
    const times: number[][] = chosen.map(() => [])
    for (let repetition = 0; repetition < context.config.fanoutRepetitions; repetition++) {
      for (let turn = 0; turn < chosen.length; turn++) {
        const index = (repetition + turn) % chosen.length
        times[index]!.push(await broadcasts[index]!(MESSAGES))
      }
    }
    const results: Partial<Record<TargetKey, Metrics>> = {}
    for (const [index, target] of chosen.entries()) {
      const ms = median(times[index]!)
      results[target.key] = { deliveriesPerSecond: (MEMBERS * MESSAGES) / (ms / 1000), ms }
    }
    const meshAt = chosen.findIndex((target) => target.key === 'mesh')
    const sioAt = chosen.findIndex((target) => target.key === 'sio')
    if (meshAt >= 0 && sioAt >= 0) {
      // Deliveries/s ratio of one repetition = the inverse ratio of its times.
      results.mesh!.overSio = median(times[meshAt]!.map((ms, repetition) => times[sioAt]![repetition]! / ms))
    }
    return results
  })
}
