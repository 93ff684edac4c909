import type { Portal, PortalContext } from 'meshkit/server'

/** What a portal handled, as the child portals print it (one JSON line) and in-process portals record it. No vitest here: the child fixture imports it. */
export interface PortalReport {
  portal: string
  kind: string
  eventId: string
  connection: string
  instance?: string
  userId?: string
  type?: string
  data?: unknown
  code?: number
  reason?: string
  /** Wall-clock times (fractional ms) the handler started and finished. */
  start: number
  end: number
}

/** A wall-clock time in fractions of a millisecond, comparable between processes of one machine. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now()
}

export function reportOf(portal: Portal, ctx: PortalContext, start: number, end: number): PortalReport {
  return {
    portal: portal.id,
    kind: ctx.kind,
    eventId: ctx.eventId,
    connection: ctx.connection.id,
    instance: ctx.connection.instanceId,
    userId: ctx.connection.userId,
    type: ctx.type,
    data: ctx.data,
    code: ctx.code,
    reason: ctx.reason,
    start,
    end,
  }
}
