import type { IncomingMessage } from 'node:http'

/**
 * Which web pages may open a connection: a list of origins (`'https://app.example.com'`,
 * wildcards such as `'https://*.example.com'`, `'*'` for any, `'null'` for opaque
 * origins, or RegExps tested against the `Origin` header as sent), or a function that
 * decides each upgrade (`origin` is `undefined` when the request has no `Origin`).
 */
export type AllowedOrigins =
  | readonly (string | RegExp)[]
  | ((origin: string | undefined, request: IncomingMessage) => boolean)

/** Stands for a `*` label while an entry goes through the URL parser, which would otherwise keep it as it is. */
const WILDCARD = '__meshkit_any__'
/** One or more whole DNS labels: `*.example.com` never matches `example.com` or `evil-example.com`. */
const LABELS = '[^./:@\\[\\]]+(?:\\.[^./:@\\[\\]]+)*'
const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' }

/**
 * Decides, from its `Origin` header, whether an upgrade may go on: the defence
 * against cross-site WebSocket hijacking. Browsers attach the user's cookies to a
 * WebSocket upgrade whatever page opens it, and WebSockets are not covered by CORS,
 * so a foreign page could otherwise act as the user over a cookie-authenticated
 * connection. The `Origin` header is the one thing such a page cannot forge.
 * Clients that are not browsers send none (or any they like), so an upgrade without
 * one is never refused by a list: the check protects browsers' users, it is not
 * authentication.
 */
export class OriginPolicy {
  private readonly decide: (origin: string | undefined, request: IncomingMessage) => boolean

  /** Throws a `TypeError` for a malformed list or entry: configuration errors surface at construction. */
  constructor(allowed: AllowedOrigins | undefined) {
    if (allowed === undefined) this.decide = sameOrigin
    else if (typeof allowed === 'function') this.decide = (origin, request) => allowed(origin, request) === true
    else if (Array.isArray(allowed)) this.decide = listed(allowed.map(toMatcher))
    else throw new TypeError('allowedOrigins must be an array of origins and RegExps, or a function')
  }

  /** Whether the upgrade may go on; a throwing function refuses (the caller logs it). */
  allows(request: IncomingMessage): boolean {
    return this.decide(request.headers.origin, request)
  }
}

/** Tests one origin: `raw` as the header has it, `normalized` as `scheme://host[:port]` (undefined if it is not one). */
type Matcher = (raw: string, normalized: string | undefined) => boolean

function listed(matchers: Matcher[]): (origin: string | undefined) => boolean {
  return (origin) => {
    if (origin === undefined) return true
    const normalized = normalizeOrigin(origin)
    return matchers.some((match) => match(origin, normalized))
  }
}

function toMatcher(entry: unknown): Matcher {
  if (entry instanceof RegExp) {
    // A global or sticky RegExp remembers where it last matched; a copy without those flags does not.
    const pattern = new RegExp(entry.source, entry.flags.replace(/[gy]/g, ''))
    return (raw) => pattern.test(raw)
  }
  if (typeof entry !== 'string') throw new TypeError(`allowedOrigins entries must be strings or RegExps, got ${typeof entry}`)
  if (entry === '*') return () => true
  if (entry === 'null') return (raw) => raw === 'null'
  const host = entry.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/(:\d+)?\/?$/, '')
  // Only whole host labels can be wildcards: 'https://app-*.example.com' or a port '*' would be a guess at what was meant.
  if (host.split('.').some((label) => label.includes('*') && label !== '*')) {
    throw new TypeError(`allowedOrigins: "*" must stand for whole host labels, in "${entry}"`)
  }
  const normalized = normalizeOrigin(entry.replaceAll('*', WILDCARD))
  if (normalized === undefined) throw new TypeError(`allowedOrigins: "${entry}" is not an origin (scheme://host[:port], no path)`)
  if (!normalized.includes(WILDCARD)) return (_raw, origin) => origin === normalized
  const source = normalized.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll(WILDCARD, LABELS)
  const pattern = new RegExp(`^${source}$`)
  return (_raw, origin) => origin !== undefined && pattern.test(origin)
}

/** `scheme://host[:port]` as browsers send it (lower case, punycode, no default port), or undefined for anything else. */
function normalizeOrigin(origin: string): string | undefined {
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return undefined
  }
  if (url.host === '' || (url.pathname !== '' && url.pathname !== '/') || url.search || url.hash || url.username || url.password) return undefined
  return `${url.protocol}//${url.host}`
}

/** The default: no `Origin` (not a browser), or one whose host and port are the request's `Host`. */
function sameOrigin(origin: string | undefined, request: IncomingMessage): boolean {
  if (origin === undefined) return true
  const host = request.headers.host
  if (host === undefined) return false
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return false
  }
  // The URL parser drops the scheme's default port from the origin; a Host header may still carry it.
  const defaultPort = DEFAULT_PORTS[url.protocol]
  const requested = host.toLowerCase()
  return url.host === requested || (defaultPort !== undefined && `${url.host}:${defaultPort}` === requested)
}
