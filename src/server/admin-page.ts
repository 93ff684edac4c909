import type { IncomingMessage, ServerResponse } from 'node:http'
import { isMeshError } from '../shared/errors.js'
import type { ClusterView, InspectOptions } from './cluster-view.js'
import { pathOf } from './http-endpoint.js'
import type { Logger } from './logger.js'

/** Options of `server.adminHandler()`. */
export interface AdminHandlerOptions {
  /**
   * Decides every request for the page (sync or async); anything but `true`, or a
   * throw (logged), refuses: 401 with a Basic challenge when the request carried no
   * `Authorization` header (so a browser asks for credentials), 403 otherwise. Required.
   */
  authorize: (request: IncomingMessage) => boolean | Promise<boolean>
  /** The path the page answers on (query strings ignored). @default '/meshkit/admin' */
  path?: string
  /** The `limit` of the `inspect()` the page shows. @default 200 */
  limit?: number
}

/** `(request, response, next?) => boolean`: true when the request was the page's; otherwise calls `next` (if given). Express/Connect middleware as is. */
export type AdminHandler = (request: IncomingMessage, response: ServerResponse, next?: () => void) => boolean

// The page has no script at all and loads nothing: the policy makes any markup that
// slipped through escaping inert, and keeps the page out of other sites' frames.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
}

/** Builds the handler of a small read-only page rendering `inspect()`; see `server.adminHandler`. */
export function createAdminHandler(inspect: (options: InspectOptions) => Promise<ClusterView>, options: AdminHandlerOptions, logger: Logger): AdminHandler {
  if (typeof options?.authorize !== 'function') throw new TypeError('adminHandler needs an authorize(request) function')
  const path = options.path ?? '/meshkit/admin'
  if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`adminHandler path must start with "/", got ${String(path)}`)
  const limit = options.limit ?? 200
  if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`adminHandler limit must be a whole number of at least 0, got ${String(limit)}`)
  const { authorize } = options

  async function answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(response, 405, 'Method Not Allowed', { allow: 'GET, HEAD' })
    let allowed = false
    try {
      allowed = (await authorize(request)) === true
    } catch (error) {
      logger.error?.('admin page authorize failed', { error })
    }
    if (!allowed) {
      if (request.headers.authorization === undefined) return send(response, 401, 'Unauthorized', { 'www-authenticate': 'Basic realm="meshkit admin", charset="UTF-8"' })
      return send(response, 403, 'Forbidden')
    }
    let view: ClusterView
    try {
      view = await inspect({ limit })
    } catch (error) {
      logger.warn?.('admin page could not inspect the cluster', { error })
      return send(response, 503, `Service Unavailable: ${isMeshError(error) ? error.code : 'INTERNAL_ERROR'}`)
    }
    send(response, 200, render(view), { 'content-type': 'text/html; charset=utf-8' }, request.method === 'HEAD')
  }

  return (request, response, next) => {
    if (pathOf(request.url) !== path) {
      next?.()
      return false
    }
    answer(request, response).catch((error: unknown) => {
      // Only a failing socket gets here; the response may be half written.
      logger.error?.('admin page failed', { error })
      response.destroy()
    })
    return true
  }
}

function send(response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}, headOnly = false): void {
  const bytes = Buffer.from(body)
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS, ...headers, 'content-length': bytes.length })
  response.end(headOnly ? undefined : bytes)
}

/** The view as one HTML document; every name in it came from clients or the store and is escaped. */
export function render(view: ClusterView): string {
  const instances = table(['instance', 'connections', 'alive', 'answered', 'last seen'], view.instances.map((instance) => [
    instance.self ? `${instance.id} (this one)` : instance.id,
    instance.connections,
    instance.alive ? 'yes' : 'no',
    instance.answered ? 'yes' : 'no',
    instance.lastSeen === undefined ? '—' : new Date(instance.lastSeen).toISOString(),
  ]))
  const rooms = table(['room', 'members'], view.rooms.map((room) => [room.name, room.members]))
  const channels = table(['channel', 'subscribers', 'last offset'], view.channels.map((channel) => [channel.name, channel.subscribers, channel.lastOffset]))
  const users = view.users ? `<p>${view.users.online} online</p>${table(['user'], view.users.ids.map((id) => [id]))}` : '<p>Online users are not tracked.</p>'
  const portals = table(['portal group', 'portals', 'backlog'], view.portals.map((group) => [group.group, group.portals, group.backlog]))
  const notes = [
    view.partial ? '<p class="warn">Partial: an instance listed as alive did not answer; its counts are missing.</p>' : '',
    view.truncated ? '<p class="warn">Some lists are cut at the limit.</p>' : '',
  ].join('')
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>meshkit</title><style>${STYLE}</style></head><body>
<h1>meshkit cluster</h1>${notes}
<h2>Instances</h2>${instances}<h2>Rooms</h2>${rooms}<h2>Channels</h2>${channels}<h2>Users</h2>${users}<h2>Portal groups</h2>${portals}
</body></html>`
}

const STYLE = 'body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.warn{color:#a40}'

function table(headings: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  if (rows.length === 0) return '<p>None.</p>'
  const head = headings.map((heading) => `<th>${escape(heading)}</th>`).join('')
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${escape(String(cell))}</td>`).join('')}</tr>`).join('')
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}
