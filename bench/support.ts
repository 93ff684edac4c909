// Shared helpers of the orchestrator: server processes, a control channel to them,
// statistics, bounded waits and the Markdown table.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'

export const repoRoot = fileURLToPath(new URL('..', import.meta.url))

/** Options for every server process of this run (set once by run.ts). */
export const processOptions = {
  fileLimit: 0,
  /** Open files this process (and so each server it starts) may hold. */
  openFiles: Infinity,
  cpuProfDir: undefined as string | undefined,
}

export interface ServerProcess {
  readonly port: number
  readonly child: ChildProcess
  /** Asks the server's control channel (stdin/stdout, outside the target's protocol). */
  control<T = Record<string, number>>(command: string): Promise<T>
  stop(): Promise<void>
}

const running = new Set<ChildProcess>()

/** The soft and hard limits on open files of processes this one starts. */
export function fileLimits(): { soft: number; hard: number } {
  const read = (flag: string): number => {
    const value = execFileSync('bash', ['-c', `ulimit ${flag}`]).toString().trim()
    return value === 'unlimited' ? Infinity : Number(value)
  }
  return { soft: read('-Sn'), hard: read('-Hn') }
}

/**
 * Starts `bench/servers/<script>` in its own process (with `--expose-gc` and any other
 * node `flags`, and the open-files limit raised when processOptions.fileLimit asks), and
 * resolves once it prints its port.
 */
export function startServer(script: string, env: Record<string, string> = {}, flags: readonly string[] = []): Promise<ServerProcess> {
  const file = fileURLToPath(new URL(`./servers/${script}`, import.meta.url))
  const profile = processOptions.cpuProfDir && script === 'meshkit.ts' ? ['--cpu-prof', '--cpu-prof-dir', processOptions.cpuProfDir] : []
  const nodeArgs = ['--expose-gc', ...flags, ...profile, '--import', 'tsx', file]
  const limit = processOptions.fileLimit > 0 ? `ulimit -n ${processOptions.fileLimit} || exit 90; ` : ''
  const child = spawn('bash', ['-c', `${limit}exec "$0" "$@"`, process.execPath, ...nodeArgs], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  running.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => (running.delete(child), resolve())))
  const replies = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>()
  let nextId = 0
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => {
      const error = new Error(`server ${script} exited (code ${code}, signal ${signal})`)
      for (const reply of replies.values()) reply.reject(error)
      reject(error)
    })
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('REPLY ')) {
        const { id, result } = JSON.parse(line.slice(6)) as { id: number; result: unknown }
        replies.get(id)?.resolve(result)
        replies.delete(id)
        return
      }
      const match = /^PORT (\d+)$/.exec(line)
      if (!match) return void console.log(`[${script}] ${line}`)
      resolve({
        port: Number(match[1]),
        child,
        control: (command) =>
          withTimeout(new Promise((done, fail) => {
            const id = ++nextId
            replies.set(id, { resolve: done, reject: fail })
            child.stdin!.write(`${JSON.stringify({ id, command })}\n`)
          }), 30_000, `control ${command} of ${script}`),
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
          await exited
          clearTimeout(timer)
        },
      })
    })
  })
}

/**
 * Starts servers (one after another, or all at once with `together`: loading a server
 * takes seconds of CPU on busy cores, and curve points start up to six), runs `body`,
 * and stops every one of them however `body` ends.
 */
export async function withServers<T>(
  specs: readonly { script: string; env?: Record<string, string>; flags?: readonly string[] }[],
  body: (servers: ServerProcess[]) => Promise<T>,
  { together = false }: { together?: boolean } = {},
): Promise<T> {
  const started: ServerProcess[] = []
  try {
    if (together) {
      const results = await Promise.allSettled(specs.map((spec) => startServer(spec.script, spec.env, spec.flags)))
      for (const result of results) if (result.status === 'fulfilled') started.push(result.value)
      const failed = results.find((result) => result.status === 'rejected')
      if (failed) throw failed.reason
    } else {
      for (const spec of specs) started.push(await startServer(spec.script, spec.env, spec.flags))
    }
    return await body(started)
  } finally {
    await Promise.all(started.map((server) => server.stop()))
  }
}

/** Last resort on exit or failure: every server process still running is killed. */
export function killAllServers(): void {
  for (const child of running) child.kill('SIGKILL')
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length % 2 === 1 || sorted.length === 0) return percentile(sorted, 50)
  return (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` running at once. */
export async function inBatches<T>(count: number, concurrency: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++
      results[index] = await task(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return results
}

/** Polls `condition` every 50 ms for at most `ms`; false if it never held. */
export async function waitUntil(condition: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await condition()) return true
    await sleep(50)
  }
  return false
}

/** A Markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** Sizes of one run; `--quick` shortens durations and repetitions, never the workloads' shape. */
export interface BenchConfig {
  rounds: number
  /** RPC: measuring time per target and round, in slices interleaved with the other targets. */
  rpcSeconds: number
  fanoutRepetitions: number
  broadcasts: number
  holdSeconds: number
  /** Chat: measuring time per target and round, in 1 s windows taking turns with the other target. */
  chatSeconds: number
  /** Presence: timed updates per phase, and lists per room size. */
  presenceUpdates: number
}

/** What a workload gets from the orchestrator. */
export interface BenchContext {
  readonly config: BenchConfig
  /** The bench's own redis-server. */
  readonly redisUrl: string
  /** A namespace (Redis key prefix) no earlier run used. */
  namespace(): string
  /**
   * Every node of a 3-master Redis Cluster (one replica each) on loopback, started on the
   * first call and kept until the run ends (workloads with `redis: 'cluster'`).
   */
  redisCluster(): Promise<readonly RedisAddress[]>
}

export interface RedisAddress {
  host: string
  port: number
}

/** BENCH_REDIS_CLUSTER for bench/servers/meshkit.ts: the startup nodes as `host:port,host:port,...`. */
export const clusterEnv = (nodes: readonly RedisAddress[]): string => nodes.map(({ host, port }) => `${host}:${port}`).join(',')

/**
 * Counters of redis-server processes, summed over them: the CPU time they used so far
 * (INFO cpu, user + system; the share of a workload's cost that its servers' own CPU
 * time leaves out), and how often they ran a command (INFO commandstats).
 */
export function redisCounters(nodes: readonly (string | RedisAddress)[]): { cpuMs(): Promise<number>; calls(command: string): Promise<number>; close(): void } {
  const clients = nodes.map((node) => (typeof node === 'string' ? new Redis(node) : new Redis(node.port, node.host)))
  const field = (info: string, name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0)
  const summed = async (section: string, read: (info: string) => number): Promise<number> =>
    (await Promise.all(clients.map((client) => client.info(section)))).reduce((sum, info) => sum + read(info), 0)
  return {
    cpuMs: () => summed('cpu', (info) => (field(info, 'used_cpu_user') + field(info, 'used_cpu_sys')) * 1000),
    calls: (command) => summed('commandstats', (info) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0)),
    close: () => clients.forEach((client) => client.disconnect()),
  }
}

/** One run's figures, by metric name. */
export type Metrics = Record<string, number>
