// 10 and 11. Presence at 1,000 members (issue 14): one room exposed with presence holds
// 1,000 MeshClients that joined with a state; on one instance (memory store, workload
// 10) and on two instances on one Redis, half the members on each (workload 11).
//
// - List: `client.presence(room)` from a member (the command's round trip included) and
//   `server.getPresence(room)` timed inside the first server (bench/servers/meshkit.ts),
//   at 250 members and at 1,000 (linear growth is 4×).
// - Update: a member (a different one each time) `await`s `setPresence`, one update at a
//   time as users write it; timed until all 999 others received its `update` event.
//   Baseline, taking turns with the updates: a `say` command whose handler awaits
//   `broadcastRoom` of an event as large to the same room (delivery without presence).
// - Join: one more client joins with presence: until `joinRoom` resolves, and until all
//   1,000 members received its `join`; then it leaves (until all received the `leave`).
// - Bystanders: 1,000 more clients on the same instances, present in 10 rooms of their
//   own; every frame their sockets receive while updates run is counted (must be 0), and
//   the update time with them is compared to the time without (the mean of before they
//   connected and after they left, so that drift does not pass for a difference).
//
// The load process decodes every event the members receive (999 per update), so update
// times include the client side, and wall times move with other load on the cores: the
// servers' CPU time per update (both servers', over updates alone) is the steadier
// comparison of with and without bystanders. Heartbeats are quiet (10 min) so that no
// ping sweep over 2,000 connections lands in some measurements and not others.
import { MeshClient, type MeshClientOptions, type PresenceEvent, type WebSocketConstructor } from 'meshkit/client'
import { Redis } from 'ioredis'
import { performance } from 'node:perf_hooks'
import { WebSocket } from 'ws'
import { inBatches, percentile, sleep, withServers, withTimeout, type BenchContext, type Metrics, type ServerProcess } from '../support.js'

const MEMBERS = 1_000
const QUARTER = MEMBERS / 4
const BYSTANDERS = 1_000
const BYSTANDER_ROOMS = 10
const WARM_UP_UPDATES = 10
const JOINS = 10
const ROOM = 'presence-1000'
/** Heartbeats every 10 minutes: a ping to 2,000 clients is not a presence frame, and on a loaded machine a run outlasts a minute. */
const quietHeartbeat = { BENCH_PING_INTERVAL: '600000', BENCH_LATENCY_INTERVAL: '600000' }

/** A `ws` socket that counts every frame it receives, for MeshClient's `WebSocket` option. */
function countingWebSocket(counter: { frames: number }): WebSocketConstructor {
  class CountingWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      this.on('message', () => counter.frames++)
    }
  }
  return CountingWebSocket as unknown as WebSocketConstructor
}

async function connect(port: number, options: MeshClientOptions = {}): Promise<MeshClient> {
  const client = new MeshClient(`ws://127.0.0.1:${port}`, { shouldReconnect: false, ...options })
  await client.connect()
  return client
}

type Arrival = { event: 'presence'; data: PresenceEvent } | { event: 'chat'; data: { seq: number } }

/** Resolves when `count` members received an event matching `match`, with the time of the last. */
class Arrivals {
  private current: { match: (arrival: Arrival, receiver: MeshClient) => boolean; pending: number; done: (at: number) => void } | undefined

  constructor(members: readonly MeshClient[]) {
    for (const member of members) {
      member.on<PresenceEvent>('presence', (data) => this.seen({ event: 'presence', data }, member))
      member.on<{ seq: number }>('chat', (data) => this.seen({ event: 'chat', data }, member))
    }
  }

  expect(count: number, match: (arrival: Arrival, receiver: MeshClient) => boolean): Promise<number> {
    const arrived = withTimeout(new Promise<number>((done) => (this.current = { match, pending: count, done })), 30_000, `events to ${count} members`)
    // Not awaited when the call that should cause the events throws first: its timeout must not be an unhandled rejection.
    arrived.catch(() => {})
    return arrived
  }

  private seen(arrival: Arrival, receiver: MeshClient): void {
    const current = this.current
    if (current && current.match(arrival, receiver) && --current.pending === 0) {
      this.current = undefined
      current.done(performance.now())
    }
  }
}

const p50 = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 50)
const p99 = (values: number[]): number => percentile([...values].sort((a, b) => a - b), 99)

/** Redis calls so far (every command but INFO itself), from INFO commandstats. */
async function redisCalls(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats')
  let calls = 0
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (match[1] !== 'info') calls += Number(match[2])
  return calls
}

export function presence(instances: 1 | 2) {
  return async (_target: unknown, context: BenchContext): Promise<Metrics> => {
    const env = { ...quietHeartbeat, ...(instances === 2 ? { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() } : {}) }
    const specs = Array.from({ length: instances }, () => ({ script: 'meshkit.ts', env }))
    return withServers(specs, (servers) => measure(servers, instances === 2 ? context.redisUrl : undefined, context.config.presenceUpdates))
  }
}

/** `timedUpdates` per phase and as many lists per room size: fewer under --quick, the same phases. */
async function measure(servers: readonly ServerProcess[], redisUrl: string | undefined, timedUpdates: number): Promise<Metrics> {
  const listCount = timedUpdates
  /** Updates after the timed ones, over which the servers' CPU time is read (their own control round trips excluded). */
  const cpuUpdates = Math.round(timedUpdates * 0.6)
  const opened: MeshClient[] = []
  const redis = redisUrl ? new Redis(redisUrl) : undefined
  const portOf = (index: number): number => servers[index % servers.length]!.port
  try {
    // The room: members spread over the instances, joining 50 at a time (each join reaches every member so far).
    const members = await inBatches(MEMBERS, 100, async (index) => connect(portOf(index)))
    opened.push(...members)
    const arrivals = new Arrivals(members)
    const join = async (index: number): Promise<void> => {
      if (!(await members[index]!.joinRoom(ROOM, { presence: { name: `member ${index}`, typing: false, seq: 0 } }))) throw new Error('join refused')
    }
    // (a) Lists, at a quarter of the room and at the full room: linear growth is 4×.
    const lists = async (size: number): Promise<{ client: number[]; server: { p50: number; p99: number } }> => {
      const client: number[] = []
      for (let i = 0; i < listCount; i++) {
        const startedAt = performance.now()
        const list = await members[(i * 37) % size]!.presence(ROOM)
        client.push(performance.now() - startedAt)
        if (list.length !== size) throw new Error(`the list has ${list.length} members, not ${size}`)
      }
      const server = await servers[0]!.control<{ members: number; p50: number; p99: number }>(`presence-list ${ROOM} ${listCount}`)
      if (server.members !== size) throw new Error(`getPresence lists ${server.members} members, not ${size}`)
      return { client, server }
    }
    const filledAt = performance.now()
    await inBatches(QUARTER, 50, join)
    let fillMs = performance.now() - filledAt
    const quarter = await lists(QUARTER)
    const restAt = performance.now()
    await inBatches(MEMBERS - QUARTER, 50, (index) => join(QUARTER + index))
    fillMs += performance.now() - restAt
    const full = await lists(MEMBERS)

    // (b) Updates, one awaited at a time, each timed until the 999 others have it; taking
    // turns with the baseline: the same member's `say` command, whose handler awaits
    // `broadcastRoom` of an event as large to the same room (delivery without presence).
    let seq = 0
    const update = async (): Promise<number> => {
      const updater = members[seq % MEMBERS]!
      const expected = ++seq
      const arrived = arrivals.expect(MEMBERS - 1, ({ event, data }, receiver) =>
        event === 'presence' && data.type === 'update' && receiver !== updater && (data.state as { seq: number }).seq === expected)
      const startedAt = performance.now()
      await updater.setPresence(ROOM, { name: 'updater', typing: expected % 2 === 0, seq: expected })
      return (await arrived) - startedAt
    }
    const say = async (): Promise<number> => {
      const sender = members[seq % MEMBERS]!
      const expected = ++seq
      const arrived = arrivals.expect(MEMBERS - 1, ({ event, data }, receiver) => event === 'chat' && receiver !== sender && data.seq === expected)
      const startedAt = performance.now()
      // As large as an update's event: room, type, connection id and state.
      await sender.command('say', { room: ROOM, type: 'update', connectionId: sender.id, state: { name: 'updater', typing: expected % 2 === 0 }, seq: expected })
      return (await arrived) - startedAt
    }
    const serversCpuMs = async (): Promise<number> =>
      (await Promise.all(servers.map((server) => server.control<{ cpuMs: number }>('cpu')))).reduce((sum, { cpuMs }) => sum + cpuMs, 0)
    /** Timed updates (with the baseline's turns if asked), then the servers' CPU per update over updates alone. */
    const updates = async (withBaseline = false): Promise<{ update: number[]; broadcast: number[]; cpuUs: number }> => {
      for (let i = 0; i < WARM_UP_UPDATES; i++) await update()
      const times = { update: [] as number[], broadcast: [] as number[] }
      for (let i = 0; i < timedUpdates; i++) {
        times.update.push(await update())
        if (withBaseline) times.broadcast.push(await say())
      }
      const cpuBefore = await serversCpuMs()
      for (let i = 0; i < cpuUpdates; i++) await update()
      return { ...times, cpuUs: ((await serversCpuMs()) - cpuBefore) * 1000 / cpuUpdates }
    }
    const before = await updates(true)

    // (c) One more member joins and leaves, on the last instance (half the room is on the other).
    const joiner = await connect(portOf(servers.length - 1))
    opened.push(joiner)
    const joinMs: number[] = []
    const joinAllMs: number[] = []
    const leaveMs: number[] = []
    const leaveAllMs: number[] = []
    for (let i = 0; i < JOINS; i++) {
      const joined = arrivals.expect(MEMBERS, ({ event, data }) => event === 'presence' && data.type === 'join' && data.connectionId === joiner.id)
      let startedAt = performance.now()
      if (!(await joiner.joinRoom(ROOM, { presence: { name: 'joiner', typing: false, seq: i } }))) throw new Error('join refused')
      joinMs.push(performance.now() - startedAt)
      joinAllMs.push((await joined) - startedAt)
      const left = arrivals.expect(MEMBERS, ({ event, data }) => event === 'presence' && data.type === 'leave' && data.connectionId === joiner.id)
      startedAt = performance.now()
      await joiner.leaveRoom(ROOM)
      leaveMs.push(performance.now() - startedAt)
      leaveAllMs.push((await left) - startedAt)
    }

    // (d) Bystanders: present in rooms of their own on the same instances, every frame counted.
    const counter = { frames: 0 }
    const WebSocketCounting = countingWebSocket(counter)
    const bystanders = await inBatches(BYSTANDERS, 100, (index) => connect(portOf(index), { WebSocket: WebSocketCounting }))
    opened.push(...bystanders)
    await inBatches(BYSTANDERS, 50, async (index) => {
      await bystanders[index]!.joinRoom(`presence-idle-${index % BYSTANDER_ROOMS}`, { presence: { name: `bystander ${index}`, typing: false } })
    })
    // Their own rooms' join events may still be on their way from the other instance: wait for 300 ms without a frame.
    const deadline = Date.now() + 20_000
    for (let last = -1; counter.frames !== last; await sleep(300)) {
      if (Date.now() > deadline) throw new Error('the bystanders kept receiving frames')
      last = counter.frames
    }
    counter.frames = 0
    // Only updates run here (the bystanders are idle): the Redis calls are theirs, and the instances' liveness refreshes.
    const callsBefore = redis ? await redisCalls(redis) : 0
    const crowded = await updates()
    const redisCallsPerUpdate = redis ? ((await redisCalls(redis)) - callsBefore) / (WARM_UP_UPDATES + timedUpdates + cpuUpdates) : 0
    const bystanderFrames = counter.frames

    // Left before closing: a close would leave 5 s later (presenceLeaveDelay), in the middle of the next measurement.
    await inBatches(bystanders.length, 50, (index) => bystanders[index]!.leaveRoom(`presence-idle-${index % BYSTANDER_ROOMS}`))
    await inBatches(bystanders.length, 200, (index) => bystanders[index]!.close())
    opened.splice(opened.indexOf(bystanders[0]!), bystanders.length)
    const after = (await updates(true))

    const alone = (p50(before.update) + p50(after.update)) / 2
    const aloneCpuUs = (before.cpuUs + after.cpuUs) / 2
    const broadcast = [...before.broadcast, ...after.broadcast]
    const perPair = [...before.update, ...after.update].map((ms, index) => ms / broadcast[index]!)
    return {
      fillSeconds: fillMs / 1000,
      listP50: p50(full.client),
      listP99: p99(full.client),
      serverListP50: full.server.p50,
      serverListP99: full.server.p99,
      quarterListP50: p50(quarter.client),
      quarterServerListP50: quarter.server.p50,
      listGrowth: p50(full.client) / p50(quarter.client),
      serverListGrowth: full.server.p50 / quarter.server.p50,
      updateP50: alone,
      updateP99: (p99(before.update) + p99(after.update)) / 2,
      broadcastP50: p50(broadcast),
      broadcastP99: p99(broadcast),
      updateOverBroadcast: p50(perPair),
      crowdedUpdateP50: p50(crowded.update),
      crowdedUpdateP99: p99(crowded.update),
      crowdedRatio: p50(crowded.update) / alone,
      updateCpuUs: aloneCpuUs,
      crowdedUpdateCpuUs: crowded.cpuUs,
      crowdedCpuRatio: crowded.cpuUs / aloneCpuUs,
      bystanderFrames,
      joinP50: p50(joinMs),
      joinP99: p99(joinMs),
      joinAllP50: p50(joinAllMs),
      leaveP50: p50(leaveMs),
      leaveAllP50: p50(leaveAllMs),
      ...(redis ? { redisCallsPerUpdate } : {}),
    }
  } finally {
    redis?.disconnect()
    await inBatches(opened.length, 200, (index) => opened[index]!.close())
  }
}
