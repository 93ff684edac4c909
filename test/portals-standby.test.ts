import { describe, expect, it } from 'vitest'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { childPortal, ReportLog, type PortalReport } from './support/child-portal.js'
import { connectClient, eventually } from './support/harness.js'
import { allDisconnected, eventLine, expectedLine, expectStableEventIds, PORTAL_TTL, sendSteps } from './support/portals.js'

const now = (): number => performance.timeOrigin + performance.now()

/** Whether the log holds every connection's connection event and messages up to `seq` (excluded). */
function handledUpTo(ids: readonly string[], seq: number): (reports: readonly PortalReport[]) => boolean {
  return (reports) => ids.every((id) => new Set(eventLine(reports, id)).size >= seq + 1)
}

describe('a portal group without distributeLoad', () => {
  it('has one active portal; a standby takes over everything when the active one is killed, within the bound and in order', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('portal-standby')
    const ttl = PORTAL_TTL
    const [server] = await startInstances(1, { namespace, portal: { enabled: true, distributeLoad: false } })
    const log = new ReportLog()
    // The oldest live portal is the active one: the standby's portal starts once the active one is ready.
    const [active, standby] = await Promise.all([childPortal({ namespace, log, ttl, commands: ['whoami'] }), childPortal({ namespace, log, ttl, commands: ['whoami'], deferred: true })])
    await standby.start()
    const clients = await Promise.all(Array.from({ length: 8 }, () => connectClient(server!)))
    const whoami = async (): Promise<string> => (await clients[0]!.command<{ portal: string }>('whoami')).portal
    // The server reads the registry about once a second: retry until it has seen the portals.
    await eventually(() => whoami())
    // Commands too go to the active portal only.
    expect(await Promise.all([0, 1, 2, 3].map(() => whoami()))).toEqual([active.id, active.id, active.id, active.id])
    const ids = clients.map((client) => client.id!)

    sendSteps(clients, 0, 10)
    await log.until(handledUpTo(ids, 10))
    // Each event went once, and only to the active portal: the standby read nothing.
    expect(log.reports.filter((report) => report.kind !== 'command')).toHaveLength(ids.length * 11)
    expect(log.of(standby.id)).toEqual([])

    const killedAt = now()
    await active.kill()
    const afterKill = whoami()
    sendSteps(clients, 10, 20)
    // A call made just after the kill waits for the standby, which answers it once active.
    expect(await afterKill).toBe(standby.id)
    await Promise.all(clients.map((client) => client.close()))
    await log.until(allDisconnected(ids), 15_000)

    expectStableEventIds(log.reports)
    const expected = expectedLine(20)
    const taken = log.of(standby.id)
    for (const id of ids) {
      const before = eventLine(log.of(active.id), id)
      const after = eventLine(taken, id)
      // The standby starts at the active portal's first unacknowledged event: a repeat at most, never a gap or a reordering.
      expect(before).toEqual(expected.slice(0, 11))
      expect(after).toEqual(expected.slice(expected.length - after.length))
      expect(after.length).toBeGreaterThanOrEqual(expected.length - 11)
    }
    expect(Math.min(...taken.map((report) => report.start)) - killedAt).toBeLessThan(ttl + ttl / 3 + 1_500)
  })

  it('close() hands the work back at once: the standby takes over well before the lease would expire, with nothing lost or repeated', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('portal-handback')
    // A long ttl: a take-over that waited for the leases to expire would need at least 2/3 of it.
    const ttl = 6_000
    const [server] = await startInstances(1, { namespace, portal: { enabled: true, distributeLoad: false } })
    const log = new ReportLog()
    const [active, standby] = await Promise.all([childPortal({ namespace, log, ttl }), childPortal({ namespace, log, ttl, deferred: true })])
    await standby.start()
    const clients = await Promise.all(Array.from({ length: 6 }, () => connectClient(server!)))
    const ids = clients.map((client) => client.id!)

    sendSteps(clients, 0, 10)
    await log.until(handledUpTo(ids, 10))
    expect(log.of(standby.id)).toEqual([])

    const closing = now()
    // The process exits by itself once the portal closed: close() left nothing open.
    expect(await active.close()).toBe(0)
    sendSteps(clients, 10, 20)
    await Promise.all(clients.map((client) => client.close()))
    await log.until(allDisconnected(ids), 15_000)

    // A graceful hand-over acknowledges what it handled: every event exactly once.
    expect(log.reports).toHaveLength(ids.length * 22)
    expect(new Set(log.reports.map((report) => report.eventId)).size).toBe(log.reports.length)
    for (const id of ids) {
      expect(eventLine(log.of(active.id), id)).toEqual(expectedLine(20).slice(0, 11))
      expect(eventLine(log.of(standby.id), id)).toEqual(expectedLine(20).slice(11))
    }
    // One standby heartbeat (ttl/3) and a read; expiry would take at least 2/3 of the ttl.
    expect(Math.min(...log.of(standby.id).map((report) => report.start)) - closing).toBeLessThan((ttl * 2) / 3)
  })
})
