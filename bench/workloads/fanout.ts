// 2. Room fan-out on one instance: 200 clients in a room; one request makes the server
// broadcast 300 messages to it; timed from the request until every client has all 300.
import { median, withServers, withTimeout, type BenchContext, type Metrics, type ServerProcess } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'

export const MEMBERS = 200
export const MESSAGES = 300
const ROOM = 'room'

/**
 * Starts two instances of every chosen target (one Redis, each target in its own
 * namespace), runs `body` with each target's pair, and closes every client `body` put in
 * `opened`, however it ends.
 */
export function withInstancePairs<T>(
  chosen: readonly Target[],
  context: BenchContext,
  body: (pairs: [ServerProcess, ServerProcess][], opened: BenchClient[]) => Promise<T>,
): Promise<T> {
  const specs = chosen.flatMap((target) => {
    const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() }
    return [{ script: target.script, env }, { script: target.script, env }]
  })
  return withServers(specs, async (servers) => {
    const opened: BenchClient[] = []
    try {
      return await body(chosen.map((_, index) => [servers[2 * index]!, servers[2 * index + 1]!]), opened)
    } finally {
      await closeAll(opened)
    }
  })
}

/**
 * Prepares timed broadcasts to `members` (already in `room`), started by `trigger` with
 * `command` (the servers' 'fanout', or 'fanoutAwaited'): each call of the returned
 * function asks for `count` messages and resolves with the milliseconds until the last
 * member received the last one (in order, or it throws).
 */
export function broadcaster(trigger: BenchClient, members: readonly BenchClient[], room: string, command = 'fanout') {
  const received = new Array<number>(members.length).fill(0)
  let current: { tag: number; count: number; pending: number; done: (at: number) => void } | undefined
  let outOfOrder = 0
  members.forEach((member, index) => {
    member.on('tick', (data: { seq: number; tag: number }) => {
      if (!current || data.tag !== current.tag) return
      if (data.seq !== received[index]) outOfOrder++
      if (++received[index]! === current.count && --current.pending === 0) current.done(performance.now())
    })
  })
  let tag = 0
  return async (count: number): Promise<number> => {
    received.fill(0)
    const finished = new Promise<number>((done) => (current = { tag: ++tag, count, pending: members.length, done }))
    const startedAt = performance.now()
    const [, finishedAt] = await withTimeout(
      Promise.all([trigger.call(command, { room, count, tag }), finished]),
      30_000,
      `broadcast of ${count} to ${members.length} clients`,
    )
    current = undefined
    if (outOfOrder > 0) throw new Error(`${outOfOrder} messages arrived out of order`)
    return finishedAt - startedAt
  }
}

/**
 * Deliveries per second of `repetitions` fan-outs of `messages` each (after one warm-up),
 * median; given the members' `server`, also its CPU µs per delivery over the repetitions,
 * and this load process's (which receives every delivery).
 */
export async function measureFanout(
  trigger: BenchClient,
  members: readonly BenchClient[],
  repetitions: number,
  { messages = MESSAGES, server }: { messages?: number; server?: ServerProcess } = {},
): Promise<Metrics> {
  const broadcast = broadcaster(trigger, members, ROOM)
  await broadcast(messages)
  const cpuMs = async (): Promise<number> => (server ? (await server.control<{ cpuMs: number }>('cpu')).cpuMs : 0)
  const cpuBefore = await cpuMs()
  const loadBefore = process.cpuUsage()
  const times: number[] = []
  for (let i = 0; i < repetitions; i++) times.push(await broadcast(messages))
  const load = process.cpuUsage(loadBefore)
  const cpuUs = ((await cpuMs()) - cpuBefore) * 1000
  const ms = median(times)
  const deliveries = members.length * messages
  const perDelivery = (us: number): number => us / (deliveries * repetitions)
  const cpu: Metrics = server ? { serverCpuUsPerDelivery: perDelivery(cpuUs), clientCpuUsPerDelivery: perDelivery(load.user + load.system) } : {}
  return { deliveriesPerSecond: deliveries / (ms / 1000), ms, ...cpu }
}

export async function joinRoom(clients: readonly BenchClient[], room = ROOM): Promise<void> {
  await Promise.all(clients.map((client) => client.call('join', room)))
}

export async function fanout(target: Target, context: BenchContext): Promise<Metrics> {
  return fanoutAcross(target, [{ script: target.script, env: target.env }], context)
}

/**
 * The room's members split evenly across the given servers of one target; the
 * broadcast is started on the first server.
 */
export async function fanoutAcross(target: Target, servers: Array<{ script: string; env?: Record<string, string> }>, context: BenchContext): Promise<Metrics> {
  return withServers(servers, async (started) => {
    const members: BenchClient[] = []
    for (const server of started) members.push(...(await connectMany(target, server!.port, MEMBERS / started.length)))
    const [trigger] = await connectMany(target, started[0]!.port, 1)
    try {
      await joinRoom(members)
      return await measureFanout(trigger!, members, context.config.fanoutRepetitions)
    } finally {
      await closeAll([...members, trigger!])
    }
  })
}
