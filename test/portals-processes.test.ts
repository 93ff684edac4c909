import { describe, expect, it } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { childPortal, ReportLog } from './support/child-portal.js'
import { connectClient } from './support/harness.js'
import { allDisconnected, eventLine, expectedLine, expectHandedOver, leasesSettled, PORTAL_TTL, preferredPortal, sendSteps } from './support/portals.js'
import { partitionOf } from '../src/server/portal/stream-format.js'

/**
 * Connects clients, alternating between the servers, until every portal owns the
 * partitions of at least `perPortal` of them (connection ids are random, so the
 * count varies); that makes "every portal handled some" a property of the code, not
 * of the dice.
 */
async function clientsCovering(servers: readonly MeshServer[], portalIds: readonly string[], partitions: number, perPortal: number, atLeast: number): Promise<MeshClient[]> {
  const clients: MeshClient[] = []
  const owned = new Map<string, number>(portalIds.map((id) => [id, 0]))
  while (clients.length < atLeast || [...owned.values()].some((count) => count < perPortal)) {
    if (clients.length >= 200) throw new Error('could not give every portal a connection in 200 tries')
    const client = await connectClient(servers[clients.length % servers.length]!)
    clients.push(client)
    const owner = preferredPortal(portalIds, partitionOf(client.id!, partitions))
    owned.set(owner, owned.get(owner)! + 1)
  }
  return clients
}

describe('portal processes sharing a group', () => {
  it('two instances, three portals: each portal handles its partitions\' connections, every event exactly once, in order per connection', { timeout: 40_000 }, async () => {
    const namespace = uniqueNamespace('portal-proc')
    const partitions = 32
    const servers = await startInstances(2, { namespace, portal: { enabled: true, partitions } })
    const log = new ReportLog()
    const portals = await Promise.all([0, 1, 2].map(() => childPortal({ namespace, log, ttl: PORTAL_TTL })))
    const portalIds = portals.map((portal) => portal.id)
    await leasesSettled(namespace, portalIds, partitions)

    const clients = await clientsCovering(servers, portalIds, partitions, 3, 30)
    const ids = clients.map((client) => client.id!)
    sendSteps(clients, 0, 20)
    await Promise.all(clients.map((client) => client.close()))
    await log.until(allDisconnected(ids), 20_000)

    expect(log.reports).toHaveLength(ids.length * 22)
    expect(new Set(log.reports.map((report) => report.eventId)).size).toBe(log.reports.length)
    for (const [index, id] of ids.entries()) {
      expect(eventLine(log.reports, id)).toEqual(expectedLine(20))
      const reports = log.reports.filter((report) => report.connection === id)
      // One portal, the one the partition's rendezvous picks, handled the whole connection.
      expect(new Set(reports.map((report) => report.portal))).toEqual(new Set([preferredPortal(portalIds, partitionOf(id, partitions))]))
      expect(new Set(reports.map((report) => report.instance))).toEqual(new Set([servers[index % 2]!.instanceId]))
    }
    for (const id of portalIds) expect(log.of(id).length).toBeGreaterThanOrEqual(3 * 22)
  })

  it('a portal killed mid-stream loses no event: its partitions move to the survivors within the bound, in order per connection', { timeout: 40_000 }, async () => {
    const namespace = uniqueNamespace('portal-kill')
    const partitions = 16
    const ttl = PORTAL_TTL
    const servers = await startInstances(2, { namespace, portal: { enabled: true, partitions } })
    const log = new ReportLog()
    // Each event takes 10 ms to handle, so that the victim has work in flight and a backlog when it dies.
    const portals = await Promise.all([0, 1, 2].map(() => childPortal({ namespace, log, ttl, delay: 10 })))
    const portalIds = portals.map((portal) => portal.id)
    await leasesSettled(namespace, portalIds, partitions)

    const clients = await clientsCovering(servers, portalIds, partitions, 4, 24)
    const ids = clients.map((client) => client.id!)
    const victim = portals[0]!
    const victimConnections = ids.filter((id) => preferredPortal(portalIds, partitionOf(id, partitions)) === victim.id)
    const perConnection = 30
    sendSteps(clients, 0, perConnection)
    // Mid-stream: the victim has handled some of its connections' events, far from all.
    await log.until((reports) => reports.filter((report) => report.portal === victim.id).length >= 10)
    const killedAt = performance.timeOrigin + performance.now()
    await victim.kill()
    const handledByVictim = log.of(victim.id).length
    expect(handledByVictim).toBeLessThan(victimConnections.length * (perConnection + 1))
    await Promise.all(clients.map((client) => client.close()))
    await log.until(allDisconnected(ids), 25_000)
    // Handled by the victim but not yet acknowledged comes again: the line must be complete once the disconnection is in.
    const expected = expectedLine(perConnection)
    await log.until((reports) => ids.every((id) => new Set(eventLine(reports, id)).size === expected.length), 10_000)
    const victimPrefixes = expectHandedOver(log.reports, victim.id, ids, expected)
    for (const id of ids) if (!victimConnections.includes(id)) expect(victimPrefixes.get(id)).toEqual([])
    const survivors = log.reports.filter((report) => report.portal !== victim.id)
    // Every partition the victim held reaches a survivor within ttl + ttl/3 (+ one read); slack for a loaded machine.
    const takeOvers = new Map<number, number>()
    for (const report of survivors) {
      if (!victimConnections.includes(report.connection)) continue
      const partition = partitionOf(report.connection, partitions)
      takeOvers.set(partition, Math.min(takeOvers.get(partition) ?? Infinity, report.start - killedAt))
    }
    expect(takeOvers.size).toBe(new Set(victimConnections.map((id) => partitionOf(id, partitions))).size)
    // Mid-stream indeed: messages the victim had not finished moved, not only the disconnections sent after the kill.
    expect(survivors.some((report) => report.kind === 'message' && victimConnections.includes(report.connection))).toBe(true)
    expect(Math.max(...takeOvers.values())).toBeLessThan(ttl + ttl / 3 + 1_500)
  })
})
