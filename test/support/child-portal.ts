import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { onTestFinished } from 'vitest'
import { deferred } from './harness.js'
import type { PortalReport } from './portal-report.js'
import { sharedRedisEnv } from './shared-redis.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

export type { PortalReport } from './portal-report.js'

/**
 * Every report of a set of portals, in the order each arrived, with a way to wait
 * until they satisfy a condition (checked on each new report, never by polling).
 */
export class ReportLog {
  readonly reports: PortalReport[] = []
  private readonly waiters = new Set<() => void>()

  push(report: PortalReport): void {
    this.reports.push(report)
    for (const check of [...this.waiters]) check()
  }

  /** Resolves once `condition` holds for the reports so far; rejects after `timeout` ms. */
  until(condition: (reports: readonly PortalReport[]) => boolean, timeout = 10_000): Promise<void> {
    if (condition(this.reports)) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`portal reports did not meet the condition within ${timeout} ms (${this.reports.length} reports)`))
      }, timeout)
      const check = (): void => {
        if (!condition(this.reports)) return
        this.waiters.delete(check)
        clearTimeout(timer)
        resolve()
      }
      this.waiters.add(check)
    })
  }

  /** The reports of one portal, in the order it handled them. */
  of(portalId: string): PortalReport[] {
    return this.reports.filter((report) => report.portal === portalId)
  }
}

export interface ChildPortal {
  /** The portal's `id` (once started). */
  readonly id: string
  /** Creates the portal of a `deferred` child; resolves with its id once it is ready. */
  start(): Promise<string>
  /** kill -9: no close, no acknowledgement of what it was handling. */
  kill(): Promise<void>
  /** Asks the portal to `close()`; resolves with the exit code once the process exited by itself. */
  close(): Promise<number | null>
  /** SIGSTOP: the process stops running, as one the machine does not schedule (its connections stay open). */
  suspend(): void
  /** SIGCONT: it runs again, its timers overdue. */
  resume(): void
}

export interface ChildPortalOptions {
  namespace: string
  log: ReportLog
  group?: string
  ttl?: number
  /** Milliseconds each event handler works before reporting. */
  delay?: number
  commands?: string[]
  /** Report commands, then never answer them. */
  hold?: boolean
  /** Resolve once the process has loaded, and create the portal only on `start()`. */
  deferred?: boolean
}

/** Starts test/fixtures/portal.ts in a process of its own; resolves once its portal is ready. Killed when the test ends. */
export async function childPortal(options: ChildPortalOptions): Promise<ChildPortal> {
  const env: Record<string, string> = {
    ...sharedRedisEnv(),
    NAMESPACE: options.namespace,
    TTL: String(options.ttl ?? 1_000),
    DELAY: String(options.delay ?? 0),
    COMMANDS: (options.commands ?? []).join(','),
    HOLD: options.hold === true ? '1' : '0',
    DEFER: options.deferred === true ? '1' : '0',
  }
  if (options.group !== undefined) env.GROUP = options.group
  // node itself runs the portal (tsx as a loader), so SIGKILL reaches the process that holds its Redis connections.
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/portal.ts'], { cwd: root, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  // 'close' (not 'exit'): every line the portal wrote before it died has been read by then.
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  onTestFinished(async () => {
    child.kill('SIGKILL')
    await closed
  })
  let output = ''
  let pending = ''
  const loaded = deferred()
  const ready = deferred<string>()
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString()
    let newline: number
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline)
      pending = pending.slice(newline + 1)
      output += `${line}\n`
      if (line.startsWith('{')) options.log.push(JSON.parse(line) as PortalReport)
      if (line === 'LOADED') loaded.resolve()
      const isReady = /^READY (\S+)/.exec(line)
      if (isReady) ready.resolve(isReady[1]!)
    }
  })
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  void closed.then((code) => {
    const failure = new Error(`portal exited with ${code}: ${output}`)
    loaded.reject(failure)
    ready.reject(failure)
  })
  // Settled only by a test that waits for them; an exit later must not be an unhandled rejection.
  loaded.promise.catch(() => {})
  ready.promise.catch(() => {})
  let id: string | undefined
  const start = async (): Promise<string> => {
    child.stdin.write('start\n')
    id = await ready.promise
    return id
  }
  if (options.deferred) await loaded.promise
  else id = await ready.promise
  return {
    get id() {
      if (id === undefined) throw new Error('the portal has not started')
      return id
    },
    start,
    async kill() {
      child.kill('SIGKILL')
      await closed
    },
    close() {
      child.stdin.write('close\n')
      return closed
    },
    suspend() {
      child.kill('SIGSTOP')
    },
    resume() {
      child.kill('SIGCONT')
    },
  }
}
