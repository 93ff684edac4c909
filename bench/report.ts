// The final table: medians per target, ratios to raw ws and Socket.IO, and the targets.
import { curvesMarkdown } from './curve-report.js'
import { curves } from './curves.js'
import { median, markdownTable, type BenchConfig } from './support.js'
import type { TargetKey } from './targets.js'

/** Every round's figure, by `workload:metric` and target. */
export type Samples = Map<string, Partial<Record<TargetKey, number[]>>>

type Medians = Partial<Record<TargetKey, number>>

interface Row {
  workload: string
  metric: string
  key: string
  format: (value: number) => string
  target?: string
  met?: (m: Medians, samples: Samples) => boolean | undefined
  /** A row of meshkit's per-round ratios: every round in its column, the worst as its ratio. */
  perRound?: 'raw' | 'sio'
}

const integer = (value: number): string => Math.round(value).toLocaleString('en-US')
const decimals = (value: number): string => value.toFixed(2)
const multiple = (value: number): string => `${value.toFixed(2)}×`
const times = (value: number | undefined): string => (value === undefined || !Number.isFinite(value) ? '—' : `${value.toFixed(2)}×`)
const all = (...checks: (boolean | undefined)[]): boolean | undefined => (checks.includes(undefined) ? undefined : checks.every(Boolean))
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : a / b)
const atLeast = (value: number | undefined, bound: number): boolean | undefined => (value === undefined ? undefined : value >= bound)
const atMost = (value: number | undefined, bound: number): boolean | undefined => (value === undefined ? undefined : value <= bound)

function worst(samples: Samples, key: string, pick: (values: number[]) => number): number | undefined {
  const values = samples.get(key)?.mesh
  return values && values.length > 0 ? pick(values) : undefined
}

const lowest = (values: number[]): number => Math.min(...values)

const rows: Row[] = [
  { workload: '1. RPC', metric: 'round-trips/s', key: 'rpc:rps', format: integer, target: '≥1.0× raw ws, ≥1.5× Socket.IO',
    met: (m) => all(atLeast(ratio(m.mesh, m.raw), 1.0), atLeast(ratio(m.mesh, m.sio), 1.5)) },
  { workload: '1. RPC', metric: 'meshkit/raw ws, every round (lowest as ratio)', key: 'rpc:overRaw', format: times, perRound: 'raw',
    target: '≥1.1× raw ws in every round', met: (_, s) => atLeast(worst(s, 'rpc:overRaw', lowest), 1.1) },
  { workload: '1. RPC', metric: 'meshkit/Socket.IO, every round (lowest as ratio)', key: 'rpc:overSio', format: times, perRound: 'sio' },
  { workload: '1. RPC', metric: 'server CPU µs per round trip', key: 'rpc:serverCpuUs', format: decimals },
  { workload: '1. RPC', metric: 'client CPU µs per round trip (load process)', key: 'rpc:clientCpuUs', format: decimals },
  { workload: '1. RPC', metric: 'p50 ms', key: 'rpc:p50', format: decimals },
  { workload: '1. RPC', metric: 'p99 ms', key: 'rpc:p99', format: decimals, target: '≤1.2× raw ws', met: (m) => atMost(ratio(m.mesh, m.raw), 1.2) },
  { workload: '2. Fan-out, 1 instance', metric: 'deliveries/s', key: 'fanout:deliveriesPerSecond', format: integer, target: '≥1.2× raw ws, ≥1.3× Socket.IO',
    met: (m) => all(atLeast(ratio(m.mesh, m.raw), 1.2), atLeast(ratio(m.mesh, m.sio), 1.3)) },
  { workload: '3. Fan-out, 2 instances + Redis', metric: 'deliveries/s', key: 'fanoutCluster:deliveriesPerSecond', format: integer, target: '≥1.2× Socket.IO',
    met: (m) => atLeast(ratio(m.mesh, m.sio), 1.2) },
  { workload: '4. Memory, 2,000 idle in a room', metric: 'RSS bytes/connection', key: 'memory:rssPerConnection', format: integer, target: '≤1.2× raw ws, ≤0.5× Socket.IO',
    met: (m) => all(atMost(ratio(m.mesh, m.raw), 1.2), atMost(ratio(m.mesh, m.sio), 0.5)) },
  { workload: '4. Memory, 2,000 idle in a room', metric: 'heap bytes/connection', key: 'memory:heapPerConnection', format: integer },
  { workload: '4. Memory, 2,000 idle in a room', metric: 'young generation MiB after (diagnostic)', key: 'memory:youngMB', format: decimals },
  { workload: '4. Memory, young generation fixed at 1 MiB', metric: 'RSS bytes/connection (diagnostic)', key: 'memoryFixedYoung:rssPerConnection', format: integer },
  { workload: '4. Memory, young generation fixed at 1 MiB', metric: 'heap bytes/connection (diagnostic)', key: 'memoryFixedYoung:heapPerConnection', format: integer },
  { workload: '5. Broadcast to 10, 2 instances', metric: 'ms, no bystanders', key: 'broadcastCost:aloneMs', format: decimals },
  { workload: '5. Broadcast to 10, 2 instances', metric: 'ms, 5,000 bystanders', key: 'broadcastCost:crowdedMs', format: decimals, target: '≤1.2× no bystanders',
    met: (_, s) => atMost(worst(s, 'broadcastCost:ratio', median), 1.2) },
  { workload: '5. Broadcast to 10, 2 instances', metric: 'with / without bystanders', key: 'broadcastCost:ratio', format: multiple },
  { workload: '6. 10,000 connections, heartbeats on', metric: 'held by server (worst round)', key: 'connections:held', format: integer, target: 'all 10,000 held',
    met: (_, s) => all(atLeast(worst(s, 'connections:held', (v) => Math.min(...v)), 10_000), atLeast(worst(s, 'connections:open', (v) => Math.min(...v)), 10_000), atMost(worst(s, 'connections:dropped', (v) => Math.max(...v)), 0)) },
  { workload: '6. 10,000 connections, heartbeats on', metric: 'open / dropped at load side (worst round)', key: 'connections:open', format: integer },
  { workload: '6. 10,000 connections, heartbeats on', metric: 'event-loop delay p99 ms', key: 'connections:loopP99', format: decimals, target: '< 100 ms',
    met: (m) => (m.mesh === undefined ? undefined : m.mesh < 100) },
  { workload: '6. 10,000 connections, heartbeats on', metric: 'server RSS MiB', key: 'connections:rssMB', format: decimals },
  { workload: '7. Fan-out, 2 instances + Redis, each broadcast awaited', metric: 'deliveries/s', key: 'fanoutClusterAwaited:deliveriesPerSecond', format: integer,
    target: '≥1.5× Socket.IO', met: (m) => atLeast(ratio(m.mesh, m.sio), 1.5) },
  { workload: '7. Fan-out, 2 instances + Redis, each broadcast awaited', metric: 'meshkit/Socket.IO, every round (lowest as ratio)', key: 'fanoutClusterAwaited:overSio',
    format: times, perRound: 'sio' },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'messages/s, all 50 delivered', key: 'chat:messagesPerSecond', format: integer,
    target: '≥1.3× Socket.IO', met: (m) => atLeast(ratio(m.mesh, m.sio), 1.3) },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'meshkit/Socket.IO, every round (lowest as ratio)', key: 'chat:overSio', format: times, perRound: 'sio' },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'deliveries/s', key: 'chat:deliveriesPerSecond', format: integer },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'replies/s, delivered or not', key: 'chat:repliesPerSecond', format: integer },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'CPU µs of both servers per message counted', key: 'chat:serverCpuUs', format: decimals },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'ms to all 50 and reply, p50', key: 'chat:p50', format: decimals },
  { workload: '8. Chat, 200 clients on 2 instances, rooms of 50', metric: 'ms to all 50 and reply, p99', key: 'chat:p99', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'local command round-trips/s (50 clients, 1 awaited call each)', key: 'portal:localRps', format: integer },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'forwarded command round-trips/s', key: 'portal:forwardedRps', format: integer },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'forwarded / local round-trips/s', key: 'portal:forwardedOverLocal', format: multiple },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'local command p99 ms', key: 'portal:localP99', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'forwarded command p99 ms', key: 'portal:forwardedP99', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'forwarded / local p99', key: 'portal:p99Ratio', format: multiple },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'server CPU µs per call, local', key: 'portal:localServerCpuUs', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'server CPU µs per call, forwarded', key: 'portal:forwardedServerCpuUs', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'portal CPU µs per forwarded call', key: 'portal:forwardedPortalCpuUs', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'client messages/s handled by the portal', key: 'portal:portalMessagesPerSecond', format: integer },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'client messages/s handled by onMessage (server without portals)', key: 'portal:serverMessagesPerSecond', format: integer },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'portal / onMessage messages/s', key: 'portal:messagesRatio', format: multiple },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'server CPU µs per message, with portals', key: 'portal:portalMessageServerCpuUs', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'server CPU µs per message, without portals', key: 'portal:serverMessageCpuUs', format: decimals },
  { workload: '9. Portal: 1 server + Redis, 1 portal process', metric: 'portal CPU µs per message', key: 'portal:portalMessagePortalCpuUs', format: decimals },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'round-trips/s, no api', key: 'rpcValidation:untypedRps', format: integer },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'round-trips/s, zod schema', key: 'rpcValidation:zodRps', format: integer },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'round-trips/s, valibot schema', key: 'rpcValidation:valibotRps', format: integer },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'zod / no api, every round', key: 'rpcValidation:zodOverUntyped', format: times, perRound: 'raw' },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'valibot / no api, every round', key: 'rpcValidation:valibotOverUntyped', format: times, perRound: 'raw' },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'server CPU µs per round trip, no api', key: 'rpcValidation:untypedServerCpuUs', format: decimals },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'server CPU µs per round trip, zod schema', key: 'rpcValidation:zodServerCpuUs', format: decimals },
  { workload: '10. RPC, payload validated (meshkit only)', metric: 'server CPU µs per round trip, valibot schema', key: 'rpcValidation:valibotServerCpuUs', format: decimals },
  ...presenceRows('presence', '11. Presence, 1,000 members, 1 instance'),
  ...presenceRows('presenceCluster', '12. Presence, 1,000 members, 2 instances + Redis'),
  ...scaleRows('memoryScale1k', '13. Idle connections, heartbeats on: 1,000'),
  ...scaleRows('memoryScale10k', '13. Idle connections, heartbeats on: 10,000'),
  ...scaleRows('memoryScale30k', '13. Idle connections, heartbeats on: 30,000 (or the most the open-files limit allows)'),
  ...channelWriteRows('channelWrites1', '14. Channel writes, historyLimit 100, 1 instance + Redis: 1 writer'),
  ...channelWriteRows('channelWrites10', '14. Channel writes, historyLimit 100, 1 instance + Redis: 10 writers'),
  ...channelWriteRows('channelWrites100', '14. Channel writes, historyLimit 100, 1 instance + Redis: 100 writers', true),
  ...channelWriteRows('channelWrites100c', '14. Channel writes, historyLimit 100, 1 instance + Redis: 100 writers over 100 channels'),
]

function channelWriteRows(name: string, workload: string, target?: boolean): Row[] {
  const row = (metric: string, key: string, format: (value: number) => string): Row => ({ workload, metric, key: `${name}:${key}`, format })
  return [
    row('writes/s', 'writesPerSec', integer),
    row('server CPU µs per write', 'serverUsPerWrite', decimals),
    row('Redis CPU µs per write', 'redisUsPerWrite', decimals),
    row('µs per write, p50', 'p50Us', integer),
    row('ceiling: pipelined PUBLISH/s, one ioredis connection', 'publishCeiling', integer),
    row('ceiling: pipelined EVALSHA (return 1)/s, one ioredis connection', 'evalshaCeiling', integer),
    { ...row('writes/s over the PUBLISH ceiling', 'overPublish', multiple), ...(target ? { target: '≥0.5× PUBLISH ceiling', met: (m: Medians) => atLeast(m.mesh, 0.5) } : {}) },
    row('writes/s over the EVALSHA ceiling', 'overEvalsha', multiple),
  ]
}

function scaleRows(name: string, workload: string): Row[] {
  const tenThousand = name === 'memoryScale10k'
  return [
    { workload, metric: 'connections held', key: `${name}:connections`, format: integer },
    { workload, metric: 'RSS bytes/connection (default V8 flags)', key: `${name}:rssPerConnection`, format: integer,
      ...(tenThousand ? { target: '≤1.2× raw ws', met: (m: Medians) => atMost(ratio(m.mesh, m.raw), 1.2) } : {}) },
    { workload, metric: 'heap bytes/connection', key: `${name}:heapPerConnection`, format: integer },
    { workload, metric: 'event-loop delay p99 ms', key: `${name}:loopP99`, format: decimals },
    { workload, metric: 'server RSS MiB', key: `${name}:rssMB`, format: decimals },
    { workload, metric: 'young generation MiB (diagnostic)', key: `${name}:youngMB`, format: decimals },
    { workload, metric: 'young generation growth MiB while they connected (diagnostic)', key: `${name}:youngGrowthMB`, format: decimals },
  ]
}

function presenceRows(name: string, workload: string): Row[] {
  const row = (metric: string, key: string, format: (value: number) => string, target?: string, met?: Row['met']): Row =>
    ({ workload, metric, key: `${name}:${key}`, format, ...(target ? { target, met } : {}) })
  return [
    row('client.presence(room) ms, p50', 'listP50', decimals),
    row('client.presence(room) ms, p99', 'listP99', decimals),
    row('server.getPresence ms, p50', 'serverListP50', decimals),
    row('server.getPresence ms, p99', 'serverListP99', decimals),
    row('client.presence(room) ms at 250 members, p50', 'quarterListP50', decimals),
    row('server.getPresence ms at 250 members, p50', 'quarterServerListP50', decimals),
    row('list p50 growth, 250 → 1,000 members (client; 4× is linear)', 'listGrowth', multiple),
    row('list p50 growth, 250 → 1,000 members (server; 4× is linear)', 'serverListGrowth', multiple),
    row('setPresence to all 999 others ms, p50', 'updateP50', decimals),
    row('setPresence to all 999 others ms, p99', 'updateP99', decimals),
    row('baseline: broadcastRoom of as large an event to all 999 others ms, p50', 'broadcastP50', decimals),
    row('baseline: broadcastRoom of as large an event to all 999 others ms, p99', 'broadcastP99', decimals),
    row('update / broadcast, median of pairs', 'updateOverBroadcast', multiple),
    row('the same with 1,000 bystanders, p50', 'crowdedUpdateP50', decimals),
    row('the same with 1,000 bystanders, p99', 'crowdedUpdateP99', decimals),
    row('with / without bystanders, p50', 'crowdedRatio', multiple),
    row('servers\' CPU µs per update', 'updateCpuUs', decimals),
    row('servers\' CPU µs per update, 1,000 bystanders', 'crowdedUpdateCpuUs', decimals, '≤1.2× no bystanders',
      (_, s) => atMost(worst(s, `${name}:crowdedCpuRatio`, median), 1.2)),
    row('with / without bystanders, CPU', 'crowdedCpuRatio', multiple),
    row('frames bystanders received during updates (worst round)', 'bystanderFrames', integer, '0',
      (_, s) => atMost(worst(s, `${name}:bystanderFrames`, (v) => Math.max(...v)), 0)),
    ...(name === 'presenceCluster' ? [row('Redis calls per update', 'redisCallsPerUpdate', decimals)] : []),
    row('joinRoom with presence ms, p50', 'joinP50', decimals),
    row('joinRoom with presence ms, p99', 'joinP99', decimals),
    row('join to all 1,000 members ms, p50', 'joinAllP50', decimals),
    row('leaveRoom ms, p50', 'leaveP50', decimals),
    row('leave to all 1,000 members ms, p50', 'leaveAllP50', decimals),
    row('s to fill the room (1,000 joins, 50 at a time)', 'fillSeconds', decimals),
  ]
}

const columns: TargetKey[] = ['raw', 'sio', 'mesh']

export function finalTable(samples: Samples): string {
  const header = ['workload', 'metric', 'raw ws', 'Socket.IO', 'meshkit', 'meshkit/raw ws', 'meshkit/Socket.IO', 'target', 'met?']
  const body = rows.map((row) => {
    const perTarget = samples.get(row.key) ?? {}
    const m: Medians = {}
    for (const key of columns) {
      const values = perTarget[key]
      if (values && values.length > 0) m[key] = median(values)
    }
    let cells = columns.map((key) => (m[key] === undefined ? (perTarget[key] ? 'failed' : '—') : row.format(m[key]!)))
    let ratios = [times(ratio(m.mesh, m.raw)), times(ratio(m.mesh, m.sio))]
    if (row.perRound) {
      const rounds = perTarget.mesh ?? []
      cells = ['—', '—', rounds.length > 0 ? rounds.map((value) => value.toFixed(2)).join(', ') : '—']
      const low = rounds.length > 0 ? times(lowest(rounds)) : '—'
      ratios = row.perRound === 'raw' ? [low, '—'] : ['—', low]
    }
    if (row.key === 'connections:held' || row.key === 'connections:open') {
      const worstValue = worst(samples, row.key, (v) => Math.min(...v))
      const dropped = worst(samples, 'connections:dropped', (v) => Math.max(...v))
      cells = ['—', '—', worstValue === undefined ? '—' : row.key === 'connections:open' ? `${integer(worstValue)} / ${integer(dropped ?? NaN)}` : integer(worstValue)]
    }
    const met = row.met?.(m, samples)
    const workload = row.key.split(':')[0]!
    const ran = [...samples.keys()].some((key) => key.startsWith(`${workload}:`))
    const verdict = met === undefined ? (!row.target ? '' : ran ? 'failed' : 'not run') : met ? 'yes' : '**NO**'
    return [row.workload, row.metric, ...cells, ...ratios, row.target ?? '—', verdict]
  })
  return markdownTable(header, body)
}

/** Every round's figures, for the record. */
export function roundsTable(samples: Samples): string {
  const body = [...samples].flatMap(([key, perTarget]) =>
    columns.filter((target) => perTarget[target]).map((target) => [key, target, perTarget[target]!.map((v) => (Math.abs(v) >= 100 ? integer(v) : decimals(v))).join(', ')]),
  )
  return markdownTable(['workload:metric', 'target', 'per round'], body)
}

export interface RunRecord {
  command: string
  machine: string
  revision: string
  limitNote: string
  seconds: number
  config: BenchConfig
  samples: Samples
  failures: string[]
  /** The folder under bench/ this run's charts go to. */
  charts: string
}

/** bench/results.md: the table, how it was made, and every round's figures. */
export function resultsMarkdown({ command, machine, revision, limitNote, seconds, config, samples, failures, charts }: RunRecord): string {
  const { rounds, rpcSeconds, fanoutRepetitions, broadcasts, holdSeconds, chatSeconds, presenceUpdates } = config
  return `# Benchmark results

Command: \`${command}\` (${rounds} round(s), ${seconds.toFixed(0)} s in all), ${new Date().toISOString().slice(0, 10)}, ${revision}.
Machine: ${machine}. ${limitNote}.

Each target's server runs in its own process (\`node --expose-gc --import tsx bench/servers/<target>.ts\`); the
load runs in the orchestrator process with each target's own client (\`ws\` + JSON; socket.io-client with
acknowledgements over the websocket transport; MeshClient with msgpack), on the same two cores, so absolute
figures say more about the machine than about the targets: compare the ratios. Targets are interleaved in every
round; the table shows medians over rounds (the worst round for connections held).

${finalTable(samples)}

Workloads:

1. RPC: 50 clients × 10 requests in flight, each an awaited call, small object payload. The three targets'
   servers run side by side; after a 1 s warm-up each, every target is measured for ${rpcSeconds} s per round in
   0.5 s slices taken in turn (the order rotating every cycle), so that all see the same load from outside.
   Round-trips/s are totals over all slices; meshkit's ratio of a round is the median of its ratios to the slice
   of the same cycle, and the target needs every round. CPU per round trip: the server process's, and the load
   process's while it ran that target's clients (less sensitive to other load on the cores than throughput).
2. Fan-out: 200 clients in a room; one request makes the server broadcast 300 messages to the room (raw ws:
   a loop over a Set, JSON encoded once per message; Socket.IO: \`io.to(room).emit\`; meshkit:
   \`broadcastRoom\`); timed from the request until every client has all 300, in order; median of
   ${fanoutRepetitions} after one warm-up.
3. The same with the clients split over two server processes on one Redis (Socket.IO with
   @socket.io/redis-adapter over ioredis, meshkit with \`redis\` and one namespace), started on the first.
4. Server memory after \`global.gc()\` before and after 2,000 clients connect and join a room (after a 50-client
   warm-up). With default V8 flags the RSS growth mostly reflects how far V8 grows the young generation
   during the burst, so it is measured again with \`--max-semi-space-size=1\` (diagnostic rows).
5. meshkit, two instances on Redis, heartbeats every 60 s: end-to-end time of back-to-back \`broadcastRoom\`
   calls to a 10-member room (5 per instance) with no other connection, with 5,000 idle ones (in 100 rooms), and
   with none again (the time without is the mean of before and after); each time is the best of 5 blocks'
   medians of ${broadcasts} broadcasts.
6. 10,000 MeshClients on one meshkit instance with pingInterval 2000 and latencyInterval 1000, held ${holdSeconds} s
   while the server samples its event-loop delay (\`monitorEventLoopDelay\`, 10 ms resolution).
7. Workload 3 with each broadcast awaited before the next, as users write it (meshkit:
   \`for (...) await server.broadcastRoom(...)\`). Socket.IO's \`io.to(room).emit\` returns nothing to await, so
   its server runs workload 3's loop, which is what its users write. Both targets' instances run side by side
   and their fan-outs take turns (order rotating); the per-round row is the median of the per-repetition ratios.
8. Chat: 200 clients on two instances on Redis, 4 rooms of 50 (25 members on each instance); every client sends
   \`say\` requests ({ room, from, seq, text }) and awaits each reply before its next. meshkit's handler awaits
   \`broadcastRoom\` to the room, then replies; Socket.IO's handler calls \`io.to(room).emit\` and acknowledges.
   A message counts when its reply arrived and all 50 members (its sender included) received it, if that
   happened within a 1 s window; both targets' instances run side by side and take turns (0.5 s of sending, the
   window, a drain; order rotating), ${chatSeconds} windows per target and round after a 1.5 s warm-up each; the per-round
   row is the median of meshkit's per-cycle ratios. Every message must be delivered, in order per sender, once,
   to its room only, or the run fails. Replies/s counts the replies received in the window, delivered yet or not:
   above messages/s, it shows senders running ahead of the deliveries. CPU per message: both servers' CPU time
   over the window per message counted (Redis's own not included; with such a backlog it includes work on
   messages accepted but not yet counted).
9. Portals: one meshkit server with \`portal: { enabled: true }\` on Redis and one \`Portal\` in a process of its own.
   Commands: 50 clients, each \`await client.command(...)\` in a loop, call \`echo\` (the server's handler) and
   \`portal-echo\` (registered by the portal; forwarded through its command stream, answered on the server's
   reply topic), in 0.5 s slices taken in turn (${rpcSeconds} s each per round, after a 1 s warm-up); the ratio of a
   round is the median of the per-cycle ratios, the p99s are over all slices. Client messages: the same clients
   send 20,000 \`tick\` messages in bursts of 50 per client, timed until the portal's handler counted every one;
   the baseline is a second server without portals counting them in \`server.onMessage\`; the two take turns,
   ${fanoutRepetitions} times per round after a warm-up each, and any event the server dropped fails the run. CPU per call
   or message: the server's and the portal process's over the timed runs.
10. RPC with validated payloads: workload 1's load and payload against three meshkit servers side by side, one
   without \`api\`, one whose \`api\` validates \`echo\`'s payload with a zod schema, one with valibot
   (\`bench/servers/bench-api.ts\`), in 0.5 s slices taken in turn as in workload 1 (${rpcSeconds} s each per round);
   the ratios are the medians of the per-cycle ratios to the server without \`api\` (shown in the raw ws ratio
   column, lowest round).
11. Presence (meshkit only): one room exposed with presence, 1,000 MeshClients joined with a state
   (\`joinRoom(room, { presence })\`, 50 joins at a time). List: ${presenceUpdates} \`client.presence(room)\`
   calls from members, and ${presenceUpdates} \`server.getPresence(room)\` timed inside the server, once 250 members joined
   and again at 1,000. Update: a different member
   each time awaits \`setPresence\`, one at a time (${presenceUpdates} after 10 of warm-up), timed until all 999 others received the \`update\`;
   the load process decodes those 999 events, so its time is in the figure. Baseline: taking turns with each
   update, the next member's \`say\` command, whose handler awaits \`broadcastRoom\` of an event as large to the same
   room; its ratio is the median of the per-pair ratios. Join: one more client joins with
   presence and leaves, 10 times. Bystanders: 1,000 more clients, present in 10 rooms of 100 of their own on the
   same instances; every WebSocket frame they receive while updates run is counted; the time without them is
   the mean of the p50s before they connected and after they left. After each phase's timed updates, ${Math.round(presenceUpdates * 0.6)} more
   are run to read the servers' CPU time per update (both servers' on Redis), with and without bystanders: on
   shared cores CPU time moves far less than wall time. Heartbeats every 10 minutes.
12. The same on two instances on one Redis, members and bystanders spread evenly
   (the joiner on the second instance); Redis calls per update from \`INFO commandstats\` around the updates
   (instance liveness refreshes included).
13. Idle connections at scale: 1,000, 10,000 and 30,000 clients connect (200 handshakes at a time, after a
   50-client warm-up) and stay idle for 6 s with heartbeats at meshkit's defaults (a ping to every connection
   every 5 s; raw ws runs the ping/terminate loop of ws's README as often, Socket.IO has pingInterval 5000);
   the server's RSS and heap after \`global.gc()\`, before and after, per connection, with **default** V8 flags
   (so RSS includes whatever young generation V8 grew to), and its event-loop delay p99 while they were held.
   Where the open-files hard limit or the local port range is below 31,000, the largest point holds as many
   as they allow (its "connections held" row). Socket.IO runs the two smaller points only.
14. Channel writes with history (meshkit only, one instance on the bench's Redis; curve 5): \`server.writeChannel(…, 100)\`
   from 1, 10 and 100 concurrent writers, each awaiting its write before the next, on one channel, and 100 writers
   over 100 channels, one workload per point (\`channelWrites1\`, \`channelWrites10\`, \`channelWrites100\`,
   \`channelWrites100c\`), after a warm-up of 2,000. Cost per write: the server's CPU (user + system) and Redis's
   (INFO cpu) over the measured writes. Beside each point, the same Redis's ceiling from one ioredis connection in
   the load process: pipelined PUBLISH of a 43-byte message (a channel entry's size) and pipelined EVALSHA of
   \`return 1\`, 1,000 commands per pipeline, all pipelines in flight at once; each ceiling is the mean of a
   measurement before and one after meshkit's. Ratios are writes/s over the ceiling.

${curvesMarkdown(curves, samples, charts)}${failures.length > 0 ? `\n## Failures\n\n${failures.map((failure) => `- ${failure}`).join('\n')}\n` : ''}
## Every round

${roundsTable(samples)}
`
}
