import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { ensureRedisServer, freePort } from './redis-server.js'
import {
  ownsSlot,
  parseClusterNodes,
  spawnClusterNode,
  until,
  type ClusterNodeProcess,
  type ClusterNodeView,
} from './redis-cluster-node.js'

/** One node of a running test cluster; `role` follows failovers. */
export interface RedisClusterNode {
  readonly host: string
  readonly port: number
  readonly pid: number
  readonly id: string
  readonly role: 'master' | 'replica'
  readonly alive: boolean
}

export interface RedisClusterOptions {
  /** `cluster-node-timeout`: how soon a killed master is declared failed. @default 1000 */
  nodeTimeout?: number
}

export interface MigrateSlotOptions {
  /** Runs while the slot is MIGRATING/IMPORTING and its keys have moved, before `SETSLOT NODE`: the window in which clients get `ASK`. */
  duringMigration?: () => Promise<void>
}

/** A real local Redis Cluster: 3 masters with one replica each, on loopback ports. */
export interface RedisCluster {
  readonly nodes: readonly RedisClusterNode[]
  /** For `new Cluster(startupNodes)`. */
  readonly startupNodes: readonly { host: string; port: number }[]
  /** Milliseconds `startRedisCluster` took, for the report and the plan. */
  readonly startMs: number
  slotOf(key: string): Promise<number>
  masterOf(slotOrKey: number | string): Promise<RedisClusterNode>
  /** SIGKILLs the master owning the slot, then waits until its replica is promoted and the cluster is ok. */
  killMaster(slotOrKey: number | string): Promise<{ killed: RedisClusterNode; promoted: RedisClusterNode }>
  /** Moves a slot and its keys to `to` (a master), the way `redis-cli --cluster reshard` does. */
  migrateSlot(slot: number, to: RedisClusterNode, options?: MigrateSlotOptions): Promise<void>
  /** Stops every node it started (idempotent) and removes the temporary directory. */
  stop(): Promise<void>
}

const execFileAsync = promisify(execFile)
const DIR_PREFIX = 'meshkit-cluster-'

/**
 * Removes the directories of clusters whose test process died without `stop()` (its nodes
 * died with it, by `--pdeathsig`): each directory names its owner's pid in `owner`.
 */
function sweepStaleDirs(): void {
  for (const name of readdirSync(tmpdir()).filter((entry) => entry.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name)
    try {
      const owner = Number(readFileSync(join(dir, 'owner'), 'utf8'))
      process.kill(owner, 0)
    } catch (error) {
      // ESRCH: the owner is gone. EPERM: alive but someone else's. No owner file: not ours to judge.
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') rmSync(dir, { recursive: true, force: true })
    }
  }
}

const SLOTS = 16_384
const NODE_COUNT = 6

/** `count` distinct free loopback ports (two probes can be handed the same port). */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await freePort())
  return [...ports]
}

async function clusterNodes(node: ClusterNodeProcess): Promise<ClusterNodeView[]> {
  return parseClusterNodes(String(await node.admin().call('CLUSTER', 'NODES')))
}

/** Who owns what, as one node sees it: equal on every live node once gossip has converged. */
function ownership(views: readonly ClusterNodeView[]): string {
  return views
    .filter((view) => view.role === 'master' && view.slots.length > 0)
    .map((view) => `${view.port}:${view.slots.map(([a, b]) => `${a}-${b}`).join(',')}`)
    .sort()
    .join(' ')
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const started = Date.now()
  const binary = ensureRedisServer()
  const cliBeside = join(dirname(binary), 'redis-cli')
  const cli = existsSync(cliBeside) ? cliBeside : 'redis-cli'
  sweepStaleDirs()
  const root = mkdtempSync(join(tmpdir(), DIR_PREFIX))
  writeFileSync(join(root, 'owner'), String(process.pid))
  const processes: ClusterNodeProcess[] = []
  const views = new Map<number, ClusterNodeView>()
  let stopped: Promise<void> | undefined

  const stop = (): Promise<void> => {
    stopped ??= Promise.all(processes.map((node) => node.kill('SIGTERM'))).then(() =>
      rmSync(root, { recursive: true, force: true }),
    )
    return stopped
  }
  const live = (): ClusterNodeProcess[] => processes.filter((node) => node.child.exitCode === null && node.child.signalCode === null)
  const nodeOf = (port: number): RedisClusterNode => {
    const node = processes.find((candidate) => candidate.port === port)
    const view = views.get(port)
    if (!node || !view) throw new Error(`redis cluster: no node on port ${port}`)
    const alive = node.child.exitCode === null && node.child.signalCode === null
    return { host: node.host, port, pid: node.pid, id: view.id, role: view.role, alive }
  }
  const refresh = async (): Promise<ClusterNodeView[]> => {
    const [first] = live()
    if (!first) throw new Error('redis cluster: no live node')
    const current = await clusterNodes(first)
    for (const view of current) views.set(view.port, view)
    return current
  }
  /** Every live node says ok, all slots are served, and all agree on who owns them. */
  const settled = async (): Promise<boolean> => {
    const nodes = live()
    const infos = await Promise.all(nodes.map((node) => node.admin().call('CLUSTER', 'INFO')))
    if (!infos.every((info) => /cluster_state:ok/.test(String(info)) && String(info).includes(`cluster_slots_ok:${SLOTS}`))) {
      return false
    }
    const maps = await Promise.all(nodes.map(async (node) => ownership(await clusterNodes(node))))
    return maps.every((map) => map === maps[0])
  }
  const slotOf = async (key: string): Promise<number> => {
    const [first] = live()
    return Number(await first?.admin().call('CLUSTER', 'KEYSLOT', key))
  }
  const ownerView = async (slotOrKey: number | string): Promise<ClusterNodeView> => {
    const slot = typeof slotOrKey === 'number' ? slotOrKey : await slotOf(slotOrKey)
    const owner = (await refresh()).find((view) => view.role === 'master' && !view.failing && ownsSlot(view, slot))
    if (!owner) throw new Error(`redis cluster: no master owns slot ${slot}`)
    return owner
  }
  const processOf = (port: number): ClusterNodeProcess => {
    const found = processes.find((node) => node.port === port)
    if (!found) throw new Error(`redis cluster: no node on port ${port}`)
    return found
  }

  try {
    const ports = await freePorts(NODE_COUNT * 2)
    const spawning = Array.from({ length: NODE_COUNT }, (_, i) => {
      const [port = 0, busPort = 0] = [ports[i], ports[i + NODE_COUNT]]
      return spawnClusterNode(binary, join(root, String(port)), port, busPort, options.nodeTimeout ?? 1000)
    })
    // Collect every node that started, even when another failed, so stop() kills them all.
    const results = await Promise.allSettled(spawning)
    for (const result of results) if (result.status === 'fulfilled') processes.push(result.value)
    const failed = results.find((result) => result.status === 'rejected')
    if (failed) throw failed.reason
    await execFileAsync(
      cli,
      ['--cluster', 'create', ...processes.map((node) => `${node.host}:${node.port}`), '--cluster-replicas', '1', '--cluster-yes'],
      { timeout: 30_000 },
    )
    await until('cluster_state:ok on every node', settled)
    await until('every replica in sync with its master', async () => {
      const replicas = (await refresh()).filter((view) => view.role === 'replica')
      if (replicas.length !== NODE_COUNT / 2) return false
      const links = await Promise.all(replicas.map((view) => processOf(view.port).admin().info('replication')))
      return links.every((info) => info.includes('master_link_status:up'))
    })
  } catch (error) {
    await stop()
    throw error
  }

  return {
    get nodes() {
      return processes.map((node) => nodeOf(node.port))
    },
    startupNodes: processes.map((node) => ({ host: node.host, port: node.port })),
    startMs: Date.now() - started,
    slotOf,
    async masterOf(slotOrKey) {
      return nodeOf((await ownerView(slotOrKey)).port)
    },
    async killMaster(slotOrKey) {
      const slot = typeof slotOrKey === 'number' ? slotOrKey : await slotOf(slotOrKey)
      const owner = await ownerView(slot)
      const killed = nodeOf(owner.port)
      await processOf(owner.port).kill('SIGKILL')
      let promotedPort = 0
      await until(`a replica of ${owner.port} to take slot ${slot}`, async () => {
        const current = await refresh()
        const heir = current.find((view) => view.role === 'master' && !view.failing && ownsSlot(view, slot))
        promotedPort = heir && heir.port !== owner.port ? heir.port : 0
        return promotedPort !== 0
      })
      await until('cluster_state:ok after the failover', settled)
      await refresh()
      return { killed: { ...killed, alive: false }, promoted: nodeOf(promotedPort) }
    },
    async migrateSlot(slot, to, migrateOptions = {}) {
      const source = await ownerView(slot)
      if (source.port === to.port) throw new Error(`redis cluster: slot ${slot} is already on ${to.port}`)
      const from = processOf(source.port)
      const target = processOf(to.port)
      const moveKeys = async (): Promise<void> => {
        for (;;) {
          const keys = (await from.admin().call('CLUSTER', 'GETKEYSINSLOT', slot, 1000)) as string[]
          if (keys.length === 0) return
          await from.admin().call('MIGRATE', target.host, target.port, '', 0, 5000, 'KEYS', ...keys)
        }
      }
      // The documented order: IMPORTING on the target before MIGRATING on the source, so a
      // client sent over by ASK is never refused by a target that does not expect it yet.
      await target.admin().call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', source.id)
      await from.admin().call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id)
      await moveKeys()
      await migrateOptions.duringMigration?.()
      await moveKeys() // keys written to the source meanwhile (they existed there, so no ASK)
      // Target first: it bumps its epoch and claims the slot; then the source stops
      // redirecting with ASK; the other masters would learn it by gossip, told here to be quick.
      await target.admin().call('CLUSTER', 'SETSLOT', slot, 'NODE', to.id)
      await from.admin().call('CLUSTER', 'SETSLOT', slot, 'NODE', to.id)
      const others = (await refresh()).filter(
        (view) => view.role === 'master' && !view.failing && view.port !== to.port && view.port !== source.port,
      )
      for (const master of others) await processOf(master.port).admin().call('CLUSTER', 'SETSLOT', slot, 'NODE', to.id)
      await until(`every node to agree that slot ${slot} is on ${to.port}`, async () => {
        const all = await Promise.all(live().map((node) => clusterNodes(node)))
        return all.every((nodeViews) => nodeViews.some((view) => view.port === to.port && ownsSlot(view, slot))) && (await settled())
      })
      await refresh()
    },
    stop,
  }
}
