import { expect, onTestFinished } from 'vitest'
import type { MeshClient } from 'meshkit/client'
import { Portal, type MeshServer, type MeshServerOptions, type PortalContext, type PortalOptions } from 'meshkit/server'
import { uniqueNamespace } from './cluster.js'
import { eventually, startServer } from './harness.js'
import { sharedRedis, sharedRedisClient } from './shared-redis.js'
import { Keys } from '../../src/server/store/keys.js'
import { ReportLog, type PortalReport } from './child-portal.js'
import { reportOf, wallClock } from './portal-report.js'
import { rendezvousScore } from '../../src/server/portal/lease-table.js'

/** Portals of a test announce and renew leases quickly, so that take-overs fit in a test. */
export const PORTAL_TTL = 900

/** A server of a fresh namespace (unless given) with portals enabled on the run's Redis. */
export function startPortalServer(options: MeshServerOptions = {}, configure?: (server: MeshServer) => void): Promise<MeshServer> {
  return startServer({ redis: sharedRedis(), namespace: uniqueNamespace('portal'), ...options, portal: { enabled: true, ...options.portal } }, configure)
}

/** A ready Portal in this process, closed when the test ends. */
export async function startPortal(namespace: string, options: PortalOptions = {}, configure?: (portal: Portal) => void): Promise<Portal> {
  const portal = new Portal(sharedRedis(), { namespace, ttl: PORTAL_TTL, ...options })
  onTestFinished(() => portal.close())
  configure?.(portal)
  await portal.ready()
  return portal
}

/** Records every event a portal handles into `log`, shaped like the child portals' reports. */
export function recordEvents(portal: Portal, log: ReportLog): void {
  const record = (ctx: PortalContext): void => {
    const at = wallClock()
    log.push(reportOf(portal, ctx, at, at))
  }
  portal.onConnection(record)
  portal.onAuthentication(record)
  portal.onMessage('*', record)
  portal.onDisconnection(record)
}

/** One report as `kind` or `kind:data`. */
export function lineOf(report: PortalReport): string {
  return report.kind === 'message' ? `message:${JSON.stringify(report.data)}` : report.kind
}

/** Sends messages `step { seq }` for seq in [from, to) from every client, interleaved. */
export function sendSteps(clients: readonly MeshClient[], from: number, to: number): void {
  for (let seq = from; seq < to; seq++) for (const client of clients) client.send('step', { seq })
}

/** A connection's events (not its commands) as `kind` or `kind:data` strings, in the order given. */
export function eventLine(reports: readonly PortalReport[], connectionId: string): string[] {
  return reports.filter((report) => report.connection === connectionId && report.kind !== 'command').map(lineOf)
}

/** What a connection that sent messages `0 .. count - 1` (as `{ seq }`) and then closed produces, in order. */
export function expectedLine(count: number, authenticated = false): string[] {
  const line = ['connection']
  if (authenticated) line.push('authentication')
  for (let seq = 0; seq < count; seq++) line.push(`message:${JSON.stringify({ seq })}`)
  line.push('disconnection')
  return line
}

/** Whether the log holds the disconnection of every connection listed. */
export function allDisconnected(connectionIds: readonly string[]): (reports: readonly PortalReport[]) => boolean {
  return (reports) => {
    const gone = new Set(reports.filter((report) => report.kind === 'disconnection').map((report) => report.connection))
    return connectionIds.every((id) => gone.has(id))
  }
}

/** Each event id names one event: every report of it says the same thing (a redelivery is a repeat, never another event). */
export function expectStableEventIds(reports: readonly PortalReport[]): void {
  const seen = new Map<string, string>()
  for (const report of reports) {
    const what = JSON.stringify([report.kind, report.connection, report.data ?? null])
    const before = seen.get(report.eventId)
    if (before === undefined) seen.set(report.eventId, what)
    else expect(what).toBe(before)
  }
}

/**
 * One connection's reports in the order they were handled across portals: each
 * portal's own in arrival order (one pipe, in handling order), merged by start time.
 */
export function handlingOrder(reports: readonly PortalReport[], connectionId: string): PortalReport[] {
  return reports.filter((report) => report.connection === connectionId).sort((a, b) => a.start - b.start)
}

/**
 * After a portal was killed: the survivors never repeat each other (a partition moves
 * between live portals only after its batch is acknowledged); per connection, the
 * victim handled a prefix of `expected` in order and the survivors everything from
 * its first unacknowledged event on, so together nothing is missing. Returns each
 * connection's prefix handled by the victim.
 */
export function expectHandedOver(reports: readonly PortalReport[], victimId: string, connectionIds: readonly string[], expected: readonly string[]): Map<string, string[]> {
  expectStableEventIds(reports)
  const survivors = reports.filter((report) => report.portal !== victimId)
  expect(new Set(survivors.map((report) => report.eventId)).size).toBe(survivors.length)
  const handledByVictim = new Map<string, string[]>()
  for (const id of connectionIds) {
    const before = eventLine(reports.filter((report) => report.portal === victimId), id)
    const after = handlingOrder(survivors, id).map(lineOf)
    expect(before).toEqual(expected.slice(0, before.length))
    expect(after).toEqual(expected.slice(expected.length - after.length))
    expect(before.length + after.length).toBeGreaterThanOrEqual(expected.length)
    handledByVictim.set(id, before)
  }
  return handledByVictim
}

export { ReportLog }

/** The portal that wants a partition (docs/protocol.md): the highest score of `<portal id>:<p>`, ties to the greater id. */
export function preferredPortal(portalIds: readonly string[], partition: number): string {
  let best = ''
  let bestScore = -1
  for (const id of portalIds) {
    const score = rendezvousScore(`${id}:${partition}`)
    if (score > bestScore || (score === bestScore && id > best)) {
      best = id
      bestScore = score
    }
  }
  return best
}

/**
 * Waits until every partition's lease of a group is held by the portal that
 * prefers it: the assignment the portals converge to, after which nothing moves
 * while they all live. Read from the documented lease keys.
 */
export async function leasesSettled(namespace: string, portalIds: readonly string[], partitions: number, group = 'default'): Promise<void> {
  const redis = sharedRedisClient()
  const keys = new Keys(namespace)
  const leaseKeys = Array.from({ length: partitions }, (_, partition) => keys.portalLease(group, partition))
  await eventually(async () => {
    const holders = await redis.mget(...leaseKeys)
    expect(holders).toEqual(leaseKeys.map((_, partition) => preferredPortal(portalIds, partition)))
  }, 15_000)
}
