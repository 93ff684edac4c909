import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HttpRoutes } from './http-routes.js'

/** Why an instance is not ready (`server.readiness.reasons`). */
export const NotReadyReason = {
  /** Not listening yet, or not yet through its first attempt to join its store. */
  STARTING: 'starting',
  /** Its Redis connections are not ready (the memory store is always reachable). */
  STORE_UNREACHABLE: 'store-unreachable',
  /** `close({ drain })` is under way: new clients belong elsewhere. */
  DRAINING: 'draining',
  /** `close()` was called. */
  CLOSED: 'closed',
} as const
export type NotReadyReason = (typeof NotReadyReason)[keyof typeof NotReadyReason]

/** `server.readiness`: whether a load balancer should send this instance new clients. */
export interface ReadinessState {
  ready: boolean
  /** Empty when ready; otherwise every reason that applies, in the order of `NotReadyReason`. */
  reasons: NotReadyReason[]
}

/** What readiness is read from, each asked at the moment of the probe. */
export interface ReadinessSources {
  /** The HTTP server accepts connections. */
  listening(): boolean
  /** The store's connections are ready now. */
  storeReachable(): boolean
}

/**
 * The instance's readiness, computed when asked (a probe every few seconds costs a few
 * property reads; nothing is kept up to date in between), and the `/healthz` and
 * `/readyz` routes that report it.
 */
export class Readiness {
  /** Set once the first attempt to join the store settled, whichever way: a failure is then `store-unreachable`, not `starting`. */
  private joinSettled = false
  private phase: 'serving' | 'draining' | 'closed' = 'serving'

  constructor(private readonly sources: ReadinessSources) {}

  joined(): void {
    this.joinSettled = true
  }

  draining(): void {
    if (this.phase === 'serving') this.phase = 'draining'
  }

  closed(): void {
    this.phase = 'closed'
  }

  get state(): ReadinessState {
    // Closing stops the listener and the store on purpose: that is the one reason then.
    if (this.phase === 'closed') return { ready: false, reasons: [NotReadyReason.CLOSED] }
    const reasons: NotReadyReason[] = []
    if (!this.joinSettled || !this.sources.listening()) reasons.push(NotReadyReason.STARTING)
    if (!this.sources.storeReachable()) reasons.push(NotReadyReason.STORE_UNREACHABLE)
    if (this.phase === 'draining') reasons.push(NotReadyReason.DRAINING)
    return { ready: reasons.length === 0, reasons }
  }

  /** Adds `/healthz` and `/readyz` to meshkit's plain-HTTP routes. */
  addRoutes(routes: HttpRoutes): void {
    routes.add('/healthz', answerHealth)
    routes.add('/readyz', this.answerReady)
  }

  /** 200 or 503 with the reasons: probes read the status, people read the body. */
  private readonly answerReady = (_request: IncomingMessage, response: ServerResponse): void => {
    const { ready, reasons } = this.state
    answerJson(response, ready ? 200 : 503, ready ? { ready } : { ready, reasons })
  }
}

/** The process serves HTTP: a liveness probe asks nothing more (a Redis outage must not get the instance restarted). */
function answerHealth(_request: IncomingMessage, response: ServerResponse): void {
  answerJson(response, 200, { ok: true })
}

function answerJson(response: ServerResponse, status: number, body: object): void {
  // A probe's answer is about this moment: no proxy may serve it later.
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
  response.end(JSON.stringify(body) + '\n')
}
