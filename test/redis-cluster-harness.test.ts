import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterClients } from './support/cluster-clients.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'

/** The error a rejected promise carries (assertions on `ASK`/`MOVED` replies need its text: Redis gives no code). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection')
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('test Redis Cluster harness', () => {
  let cluster: RedisCluster
  const { cluster: connect, direct, disconnectAll } = clusterClients(() => cluster)

  beforeAll(async () => {
    cluster = await startRedisCluster()
  })
  afterAll(async () => {
    disconnectAll()
    await cluster?.stop()
  })

  it('starts 3 masters and 3 replicas, each master with slots and a replica', async () => {
    const masters = cluster.nodes.filter((node) => node.role === 'master')
    expect(masters).toHaveLength(3)
    expect(cluster.nodes.filter((node) => node.role === 'replica')).toHaveLength(3)
    expect(new Set(cluster.nodes.map((node) => node.pid)).size).toBe(6)
    expect(cluster.startMs).toBeGreaterThan(0)
  })

  it('serves an ioredis Cluster, with keys spread over the three masters', async () => {
    const client = connect()
    const keys = Array.from({ length: 60 }, (_, i) => `spread:${i}`)
    for (const key of keys) await client.set(key, key)
    expect(await client.get('spread:7')).toBe('spread:7')
    const owners = new Set(await Promise.all(keys.map(async (key) => (await cluster.masterOf(key)).port)))
    expect(owners.size).toBe(3)
    // Each master really holds some of them, not only owns their slots on paper.
    const masters = cluster.nodes.filter((node) => node.role === 'master')
    const sizes = await Promise.all(masters.map((node) => direct(node.port).dbsize()))
    expect(sizes.every((size) => size > 0)).toBe(true)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(keys.length)
  })

  it('migrates a slot: the old owner answers ASK during the move and MOVED after, a Cluster client follows both', async () => {
    const client = connect()
    const key = 'migrating:{m}'
    await client.set(key, 'v1')
    const slot = await cluster.slotOf(key)
    const source = await cluster.masterOf(slot)
    const target = cluster.nodes.find((node) => node.role === 'master' && node.port !== source.port)
    if (!target) throw new Error('no second master')
    const fromSource = direct(source.port)
    let askSeen = ''
    await cluster.migrateSlot(slot, target, {
      async duringMigration() {
        askSeen = (await rejection(fromSource.get(key))).message
        expect(await client.get(key)).toBe('v1')
      },
    })
    expect(askSeen).toMatch(new RegExp(`^ASK ${slot} 127\\.0\\.0\\.1:${target.port}`))
    expect((await rejection(fromSource.get(key))).message).toMatch(new RegExp(`^MOVED ${slot} 127\\.0\\.0\\.1:${target.port}`))
    // The client still maps the slot to the old owner (first of the slot's nodes, replicas
    // follow): its next read goes there and is redirected.
    expect(client.slots[slot]?.[0]).toBe(`127.0.0.1:${source.port}`)
    expect(await client.get(key)).toBe('v1')
    expect(client.slots[slot]?.[0]).toBe(`127.0.0.1:${target.port}`)
    expect((await cluster.masterOf(slot)).port).toBe(target.port)
    expect(await direct(target.port).get(key)).toBe('v1')
  })

  it('kills the master of a slot: its replica takes over with the replicated data, and writes resume', async () => {
    const client = connect()
    const key = 'failover:{f}'
    const master = await cluster.masterOf(key)
    const onMaster = direct(master.port)
    await onMaster.set(key, 'before')
    // WAIT: the write reached the replica, so the failover must keep it.
    expect(await onMaster.wait(1, 2000)).toBe(1)
    const { killed, promoted } = await cluster.killMaster(key)
    expect(killed.port).toBe(master.port)
    expect(alive(killed.pid)).toBe(false)
    expect(promoted.role).toBe('master')
    expect((await cluster.masterOf(key)).port).toBe(promoted.port)
    expect(cluster.nodes.find((node) => node.port === master.port)?.alive).toBe(false)
    expect(await client.get(key)).toBe('before')
    await client.set(key, 'after')
    expect(await direct(promoted.port).get(key)).toBe('after')
  })

  it('stop() ends every redis-server it started', async () => {
    const pids = cluster.nodes.map((node) => node.pid)
    disconnectAll()
    await cluster.stop()
    expect(pids.filter(alive)).toEqual([])
  })
})
