// 9. Portals (issue 12): what handling client traffic in another process costs, beside
// handling it in the server. One meshkit server with `portal: { enabled: true }` on
// Redis and one Portal in a process of its own (bench/servers/portal.ts), so that the
// portal's CPU is not the server's; the load runs here, as for every workload.
//
// - Commands: CLIENTS clients, each `await client.command(...)` in a loop (as users write
//   them), call `echo` (a handler in the server) and `portal-echo` (registered by the
//   portal: the server appends it to the command's stream, the portal reads it, answers
//   on the server's reply topic) on the same server with the same clients. As in
//   workload 1 the two take turns in 0.5 s slices, the order rotating every cycle; the
//   ratio of a round is the median of its per-cycle ratios.
// - Client messages: the same clients `client.send('tick', n)` MESSAGES in all, in bursts;
//   timed until the portal's handler has counted them all (each is an XADD by the server,
//   a read and an acknowledgement by the portal). The baseline is a second server without
//   portals whose own `server.onMessage('tick')` counts them (what the messages cost when
//   handled in the server); the two take turns, and every message must arrive.
import { performance } from 'node:perf_hooks'
import { median, percentile, sleep, withServers, withTimeout, type BenchContext, type Metrics, type ServerProcess } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'

export const CLIENTS = 50
export const SLICE_MS = 500
export const WARM_UP_MS = 1_000
/** Messages per timed run: 1,250 per partition with the default 16, far below the default backlog bound (6,250 per partition). */
export const MESSAGES = 20_000
/** Messages each client sends per turn of the event loop. */
export const BURST = 50
export const payload = { user: 'ada', action: 'update', values: [1, 2, 3], at: 1_700_000_000_000 }

export interface Tally {
  calls: number
  ms: number
  latencies: number[]
  perSlice: number[]
  serverCpuMs: number
  /** Of every portal process, summed. */
  portalCpuMs: number
}

export const cpuOf = async (process: ServerProcess): Promise<number> => (await process.control<{ cpuMs: number }>('cpu')).cpuMs

/** Every client keeps one awaited call of `command` going for `ms`; `processes`: the server, then the portals. */
export async function slice(clients: readonly BenchClient[], command: string, ms: number, processes: readonly ServerProcess[], tally?: Tally): Promise<void> {
  let running = true
  const loop = async (client: BenchClient): Promise<void> => {
    while (running) {
      const started = performance.now()
      await client.call(command, payload)
      if (tally) {
        tally.latencies.push(performance.now() - started)
        tally.calls++
      }
    }
  }
  const cpuBefore = tally ? await Promise.all(processes.map(cpuOf)) : []
  const startedAt = performance.now()
  const before = tally?.calls ?? 0
  const loops = clients.map(loop)
  await sleep(ms)
  running = false
  await Promise.all(loops)
  if (!tally) return
  const elapsed = performance.now() - startedAt
  const cpuAfter = await Promise.all(processes.map(cpuOf))
  tally.serverCpuMs += cpuAfter[0]! - cpuBefore[0]!
  for (let index = 1; index < processes.length; index++) tally.portalCpuMs += cpuAfter[index]! - cpuBefore[index]!
  tally.ms += elapsed
  tally.perSlice.push((tally.calls - before) / (elapsed / 1000))
}

/** The clients send MESSAGES `tick` messages in all; resolves with the ms until `counter` counted every one. */
async function sendTicks(clients: readonly BenchClient[], counter: ServerProcess): Promise<number> {
  const each = Math.floor(MESSAGES / clients.length)
  await counter.control(`expect-ticks ${each * clients.length}`)
  const startedAt = performance.now()
  const counted = counter.control('await-ticks')
  await Promise.all(clients.map(async (client) => {
    for (let sent = 0; sent < each; ) {
      for (const end = Math.min(each, sent + BURST); sent < end; sent++) client.send!('tick', sent)
      // Lets the socket drain and the server read, as an application's sends spread over time would.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }))
  await withTimeout(counted, 60_000, 'tick messages counted')
  return performance.now() - startedAt
}

/** Calls `portal-echo` until the server knows the portal has it (its registry refresh runs every second). */
export async function untilForwarded(client: BenchClient): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      await client.call('portal-echo', payload)
      return
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`portal-echo never answered: ${(error as { code?: string }).code}`)
      await sleep(100)
    }
  }
}

export async function portal(target: Target, context: BenchContext): Promise<Metrics> {
  const namespace = context.namespace()
  const redis = { BENCH_REDIS_URL: context.redisUrl }
  return withServers([
    { script: target.script, env: { ...redis, BENCH_NAMESPACE: namespace, BENCH_PORTAL: '1' } },
    { script: 'portal.ts', env: { ...redis, BENCH_NAMESPACE: namespace } },
    { script: target.script, env: { ...redis, BENCH_NAMESPACE: context.namespace() } },
  ], async ([server, portalProcess, plain]) => {
    const processes = [server!, portalProcess!]
    const clients: BenchClient[] = []
    const plainClients: BenchClient[] = []
    try {
      clients.push(...(await connectMany(target, server!.port, CLIENTS)))
      plainClients.push(...(await connectMany(target, plain!.port, CLIENTS)))
      await untilForwarded(clients[0]!)
      const commands = ['echo', 'portal-echo'] as const
      for (const command of commands) await slice(clients, command, WARM_UP_MS, processes)
      const tallies = commands.map((): Tally => ({ calls: 0, ms: 0, latencies: [], perSlice: [], serverCpuMs: 0, portalCpuMs: 0 }))
      const cycles = Math.max(1, Math.round((context.config.rpcSeconds * 1000) / SLICE_MS))
      for (let cycle = 0; cycle < cycles; cycle++) {
        for (let turn = 0; turn < commands.length; turn++) {
          const index = (cycle + turn) % commands.length
          await slice(clients, commands[index]!, SLICE_MS, processes, tallies[index])
        }
      }
      const [local, forwarded] = tallies as [Tally, Tally]
      for (const tally of tallies) tally.latencies.sort((a, b) => a - b)

      // Client messages: through the portal (server with portals) and to onMessage (server without), in turns.
      const runs = [
        { clients, counter: portalProcess!, cpu: [server!, portalProcess!], ms: [] as number[], serverCpuMs: 0, portalCpuMs: 0 },
        { clients: plainClients, counter: plain!, cpu: [plain!], ms: [] as number[], serverCpuMs: 0, portalCpuMs: 0 },
      ]
      for (const run of runs) await sendTicks(run.clients, run.counter) // warm-up
      for (let repetition = 0; repetition < context.config.fanoutRepetitions; repetition++) {
        for (let turn = 0; turn < runs.length; turn++) {
          const run = runs[(repetition + turn) % runs.length]!
          const before = await Promise.all(run.cpu.map(cpuOf))
          run.ms.push(await sendTicks(run.clients, run.counter))
          const after = await Promise.all(run.cpu.map(cpuOf))
          run.serverCpuMs += after[0]! - before[0]!
          run.portalCpuMs += (after[1] ?? 0) - (before[1] ?? 0)
        }
      }
      const [viaPortal, viaServer] = runs as [(typeof runs)[0], (typeof runs)[0]]
      const sent = Math.floor(MESSAGES / CLIENTS) * CLIENTS
      const stats = await server!.control<Record<string, number>>('stats')
      const dropped = Object.entries(stats).filter(([name]) => /portal/i.test(name) && /drop|fail/i.test(name)).reduce((sum, [, value]) => sum + value, 0)
      if (dropped > 0) throw new Error(`the server dropped or failed ${dropped} portal event(s): ${JSON.stringify(stats)}`)
      const repetitions = viaPortal.ms.length
      return {
        localRps: local.calls / (local.ms / 1000),
        forwardedRps: forwarded.calls / (forwarded.ms / 1000),
        forwardedOverLocal: median(forwarded.perSlice.map((value, cycle) => value / local.perSlice[cycle]!)),
        localP50: percentile(local.latencies, 50),
        forwardedP50: percentile(forwarded.latencies, 50),
        localP99: percentile(local.latencies, 99),
        forwardedP99: percentile(forwarded.latencies, 99),
        p99Ratio: percentile(forwarded.latencies, 99) / percentile(local.latencies, 99),
        localServerCpuUs: (local.serverCpuMs * 1000) / local.calls,
        forwardedServerCpuUs: (forwarded.serverCpuMs * 1000) / forwarded.calls,
        forwardedPortalCpuUs: (forwarded.portalCpuMs * 1000) / forwarded.calls,
        portalMessagesPerSecond: sent / (median(viaPortal.ms) / 1000),
        serverMessagesPerSecond: sent / (median(viaServer.ms) / 1000),
        messagesRatio: median(viaPortal.ms.map((ms, repetition) => viaServer.ms[repetition]! / ms)),
        portalMessageServerCpuUs: (viaPortal.serverCpuMs * 1000) / (sent * repetitions),
        portalMessagePortalCpuUs: (viaPortal.portalCpuMs * 1000) / (sent * repetitions),
        serverMessageCpuUs: (viaServer.serverCpuMs * 1000) / (sent * repetitions),
      }
    } finally {
      await Promise.all([closeAll(clients), closeAll(plainClients)])
    }
  })
}
