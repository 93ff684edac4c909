import type { IncomingMessage, ServerResponse } from 'node:http'
import { answerPlainHttp, pathOf } from './http-endpoint.js'
import type { Logger } from './logger.js'
import { isThenable } from './compose.js'

/**
 * Answers one plain-HTTP request. May be async (a scrape of `/metrics` is); a throw or
 * rejection becomes a 500, never an unhandled rejection.
 */
export type RouteHandler = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>

/**
 * The plain-HTTP side of meshkit: a few fixed paths (`/metrics`, and the health
 * routes) answered on meshkit's own HTTP server, or on the user's through
 * `handle`. Exact paths only (the query string is ignored), GET and HEAD only: these
 * are read-only endpoints for probes and scrapers, not a router.
 */
export class HttpRoutes {
  private readonly routes = new Map<string, RouteHandler>()

  constructor(private readonly logger: Logger) {}

  /** Answers `path` with `handler`. A path is served by one handler: adding it twice is a programming error. */
  add(path: string, handler: RouteHandler): void {
    if (!path.startsWith('/')) throw new RangeError(`route path must start with "/", got "${path}"`)
    if (this.routes.has(path)) throw new Error(`route ${path} is already served`)
    this.routes.set(path, handler)
  }

  /** Whether some handler serves `path`. */
  has(path: string): boolean {
    return this.routes.has(path)
  }

  /**
   * Answers the request when its path is one of ours: true when it did (the response
   * is then ours to end), false when the caller should answer it.
   */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const handler = this.routes.get(pathOf(request.url))
    if (!handler) return false
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' })
      response.end('method not allowed\n')
      return true
    }
    try {
      // A handler written `(req, res) => res.end(...)` returns the response: only a promise is awaited.
      const answered: unknown = handler(request, response)
      if (isThenable(answered)) answered.then(undefined, (error: unknown) => this.failed(response, error))
    } catch (error) {
      this.failed(response, error)
    }
    return true
  }

  /** The request listener of meshkit's own HTTP server: our routes, else 426 as before (this endpoint speaks WebSocket). */
  readonly listener = (request: IncomingMessage, response: ServerResponse): void => {
    if (!this.handle(request, response)) answerPlainHttp(request, response)
  }

  private failed(response: ServerResponse, error: unknown): void {
    this.logger.error?.('http route failed', { error })
    if (!response.headersSent) {
      response.writeHead(500, { 'Content-Type': 'text/plain' })
      response.end('internal error\n')
    } else {
      response.destroy()
    }
  }
}
