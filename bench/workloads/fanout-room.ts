// Curve 2 (issue 18): workload 2's fan-out on one instance as the room grows, 10, 100,
// 1,000 and 5,000 members. Each broadcast carries about DELIVERIES deliveries
// (DELIVERIES / members messages, at least MIN_MESSAGES), workload 2's 200 × 300, so that
// every point takes about as long and its figure is not dominated by the trigger's round
// trip (small rooms) or by a handful of messages (large ones). The server's CPU µs per
// delivery is what a member costs, whatever else runs on the shared cores.
//
// Heartbeats every minute, for every target: at meshkit's default (a ping and a latency
// frame to every connection every 5 s), a sweep over 5,000 connections lands in the
// seconds a point takes, and its writes are not the broadcast's (5,000 members, 60
// messages each: 0.04 write calls per delivery and 3.7–4.6 µs of server CPU, against
// 0.017, one per member and broadcast, and 2.9–3.0 µs with heartbeats a minute apart).
// What idle connections cost is curve 4's subject.
import type { Curve } from '../curves.js'
import { withServers, type BenchContext, type Metrics } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'
import { joinRoom, measureFanout } from './fanout.js'

export const ROOM_POINTS = [10, 100, 1_000, 5_000] as const
const DELIVERIES = 60_000
const MIN_MESSAGES = 4
const quietHeartbeat = { BENCH_PING_INTERVAL: '60000', BENCH_LATENCY_INTERVAL: '60000' }

/** The point workload of a room of `members`. */
export const fanoutRoom = (members: number) => (target: Target, context: BenchContext): Promise<Metrics> =>
  withServers([{ script: target.script, env: { ...target.env, ...quietHeartbeat } }], async ([server]) => {
    const opened: BenchClient[] = []
    try {
      const startedAt = performance.now()
      const room = await connectMany(target, server!.port, members)
      opened.push(...room)
      const connectSeconds = (performance.now() - startedAt) / 1000
      const [trigger] = await connectMany(target, server!.port, 1)
      opened.push(trigger!)
      await joinRoom(room)
      const messages = Math.max(MIN_MESSAGES, Math.round(DELIVERIES / members))
      // Fewer repetitions than workload 2 (3, or 1 with --quick): seven points × three targets must fit in ~3 minutes.
      const repetitions = Math.ceil(context.config.fanoutRepetitions / 2)
      const measured = await measureFanout(trigger!, room, repetitions, { messages, server })
      return { ...measured, connectSeconds }
    } finally {
      await closeAll(opened)
    }
  })

export const fanoutRoomCurve: Curve = {
  id: 'fanout-room',
  number: 2,
  title: 'Fan-out on one instance as the room grows',
  x: { label: 'members', log: true },
  y: { label: 'deliveries/s' },
  points: ROOM_POINTS.map((members) => ({ x: members, workload: `fanoutRoom${members}` })),
  series: [
    { label: 'raw ws', target: 'raw', metric: 'deliveriesPerSecond' },
    { label: 'Socket.IO', target: 'sio', metric: 'deliveriesPerSecond' },
    { label: 'meshkit', target: 'mesh', metric: 'deliveriesPerSecond' },
  ],
  flatness: [{
    label: 'meshkit server CPU µs per delivery',
    target: 'mesh',
    metric: 'serverCpuUsPerDelivery',
    lowerIsBetter: true,
    knee: 'A member costs one write call per broadcast (its frames leave corked in one writev): at 5,000 members a ' +
      'broadcast is 12 messages, so that call is shared by 12 deliveries against 60 at 1,000 and 6,000 at 10. ' +
      'With 60 messages a broadcast, 5,000 members cost what 1,000 do (2.9–3.0 µs against 2.7–3.0 µs per delivery).',
  }],
}
