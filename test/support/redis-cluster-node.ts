import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { Redis } from 'ioredis'
import { waitUntilReady } from './redis-server.js'

/** One `redis-server --cluster-enabled yes` process a cluster harness started. */
export interface ClusterNodeProcess {
  readonly host: string
  readonly port: number
  readonly pid: number
  readonly child: ChildProcess
  /** A plain (non-cluster) connection for admin commands; opened on first use. */
  admin(): Redis
  /** SIGKILLs (or SIGTERMs) the process and resolves once it has exited and been reaped. */
  kill(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>
}

/** One line of `CLUSTER NODES`, as the node that printed it sees it. */
export interface ClusterNodeView {
  readonly id: string
  readonly port: number
  readonly self: boolean
  readonly role: 'master' | 'replica'
  /** `fail` or `fail?` (pfail) flagged by the viewing node. */
  readonly failing: boolean
  readonly masterId: string | undefined
  /** Owned slots as `[first, last]` ranges; migration markers (`[slot->-id]`) left out. */
  readonly slots: readonly (readonly [number, number])[]
}

// Children of every cluster in this process. A test run that is interrupted skips the
// harness's `stop()`, and redis-server would outlive it on two shared cores; the exit hook
// kills what is left (synchronously, the only kind of work an 'exit' listener can do).
const running = new Set<ChildProcess>()
let exitHookInstalled = false
function track(child: ChildProcess): void {
  running.add(child)
  child.once('exit', () => running.delete(child))
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const survivor of running) survivor.kill('SIGKILL')
  })
}

/**
 * `setpriv --pdeathsig KILL` makes the kernel kill redis-server when the test process dies,
 * even by SIGKILL (when no 'exit' listener runs). util-linux ships it on Debian; without it
 * the exit hook above is the only guard.
 */
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path))

export async function spawnClusterNode(
  binary: string,
  dir: string,
  port: number,
  busPort: number,
  nodeTimeout: number,
): Promise<ClusterNodeProcess> {
  mkdirSync(dir, { recursive: true })
  const args = [
    '--port', String(port),
    // The bus port is chosen too: the default (port + 10000) can fall outside 65535 or be taken.
    '--cluster-port', String(busPort),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', String(nodeTimeout),
    // A replica whose link to a killed master went quiet a while ago must still take over:
    // the tests want a failover every time, not Redis's data-age safety check.
    '--cluster-replica-validity-factor', '0',
    // Redis 7 waits 5 s for more replicas before a diskless full sync; each master here
    // has one, and that wait was most of the cluster's start-up time.
    '--repl-diskless-sync-delay', '0',
    '--appendonly', 'no',
    '--save', '',
  ]
  const child = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', binary, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  track(child)
  try {
    await waitUntilReady(child, port)
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
  let admin: Redis | undefined
  let exited: Promise<void> | undefined
  return {
    host: '127.0.0.1',
    port,
    pid: child.pid ?? -1,
    child,
    admin() {
      if (admin) return admin
      admin = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null })
      // A polled node may be the one just killed; its errors are answered by the poll.
      admin.on('error', () => {})
      return admin
    },
    kill(signal) {
      admin?.disconnect()
      exited ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill(signal)
      })
      return exited
    },
  }
}

/** Parses `CLUSTER NODES` (one node's view of the whole cluster). */
export function parseClusterNodes(text: string): ClusterNodeView[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-', , , , , ...slotFields] = line.trim().split(' ')
      const flagList = flags.split(',')
      const slots = slotFields
        .filter((field) => !field.startsWith('['))
        .map((field): readonly [number, number] => {
          const [first = '', last = first] = field.split('-')
          return [Number(first), Number(last)]
        })
      return {
        id,
        port: Number(address.split('@')[0]?.split(':')[1]),
        self: flagList.includes('myself'),
        role: flagList.includes('master') ? 'master' : 'replica',
        failing: flagList.includes('fail') || flagList.includes('fail?'),
        masterId: master === '-' ? undefined : master,
        slots,
      }
    })
}

export function ownsSlot(view: ClusterNodeView, slot: number): boolean {
  return view.slots.some(([first, last]) => slot >= first && slot <= last)
}

/**
 * Polls `condition` until it holds. Only for cluster states that have no event to await
 * (gossip converging, a failover election); bounded, and the error names what never happened.
 */
export async function until(what: string, condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`redis cluster: timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
