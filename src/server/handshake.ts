import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { parse, type ParsedUrlQuery } from 'node:querystring'

/** What a connection's HTTP upgrade carried, kept for its listeners and handlers (Socket.IO's `socket.handshake`). */
export interface Handshake {
  /** The upgrade's headers, as Node gives them (lower-case names; `set-cookie` an array, repeated headers joined), less those of the WebSocket handshake itself (`sec-websocket-key`, `-version`, `-extensions`, `upgrade`, `connection`). Frozen. */
  readonly headers: Readonly<IncomingHttpHeaders>
  /** The URL's query string, parsed: a repeated key gives an array. No prototype, frozen; `{}` without a query. */
  readonly query: Readonly<ParsedUrlQuery>
  /** The peer's IP address as the socket saw it: a proxy's, behind one (read `x-forwarded-for` from `headers` then). */
  readonly address: string | undefined
}

/**
 * Headers of the WebSocket handshake itself: meaningless once the socket is open,
 * and `sec-websocket-key` is a unique string per connection. Left out of the copy to
 * keep idle connections small; `sec-websocket-protocol` (the codec) stays.
 */
const HANDSHAKE_ONLY = new Set(['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'upgrade', 'connection'])

/** Shared by every connection whose URL has no query: most have none, and each would otherwise hold an empty object. */
const NO_QUERY: Readonly<ParsedUrlQuery> = Object.freeze(Object.create(null) as ParsedUrlQuery)

/**
 * The handshake of an upgrade, copied out of the request: a connection lives far
 * longer than its request, and holding the request would keep its socket
 * bookkeeping, parser state and raw header list alive with it. What is copied is
 * what applications read: the headers, the parsed query and the address.
 */
export function handshakeOf(request: IncomingMessage): Handshake {
  const url = request.url ?? ''
  const mark = url.indexOf('?')
  const query = mark === -1 || mark === url.length - 1 ? NO_QUERY : Object.freeze(parse(url.slice(mark + 1)))
  return Object.freeze({
    headers: Object.freeze(copyHeaders(request.headers)),
    query,
    address: peerAddress(request.socket as PeerSocket),
  })
}

/** A socket as Node's `net` keeps it: `_peername` caches the peer's record once read (stable since Node 0.x; no public way to read without it). */
type PeerSocket = IncomingMessage['socket'] & { _peername?: unknown }

/**
 * The peer's address, shared with other connections from the same address (behind a
 * proxy, all of them). Reading it makes `net` cache the peer's whole record
 * (`{ address, family, port }`) on the socket for its life; the handshake keeps the
 * address, and `connection.remoteAddress` reads it there, so the cache is dropped.
 */
function peerAddress(socket: PeerSocket): string | undefined {
  const address = socket.remoteAddress
  if (socket._peername !== undefined) socket._peername = undefined
  return address === undefined ? undefined : shared(address)
}

/**
 * Headers whose values most clients share (one host, one origin, a few browsers and
 * subprotocols): each upgrade's parser makes fresh strings of them, which every idle
 * connection would keep; equal values are kept once instead. Cookies, tokens and
 * other per-client values are not in the list.
 */
const SHARED_VALUES = new Set(['host', 'origin', 'user-agent', 'accept-encoding', 'accept-language', 'cache-control', 'pragma', 'sec-websocket-protocol', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port'])

/** Values of those headers already kept, each by itself; emptied when full, so that rare values cannot pile up. */
const sharedValues = new Map<string, string>()
const MAX_SHARED_VALUES = 1_000
const MAX_SHARED_LENGTH = 512

function shared(value: string): string {
  if (value.length > MAX_SHARED_LENGTH) return value
  const kept = sharedValues.get(value)
  if (kept !== undefined) return kept
  if (sharedValues.size >= MAX_SHARED_VALUES) sharedValues.clear()
  sharedValues.set(value, value)
  return value
}

function copyHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  // Assigned one by one into a plain object, not spread: V8 keeps a frozen spread copy in a larger form (about 260 bytes more per connection, measured).
  const copy: IncomingHttpHeaders = {}
  for (const name in headers) {
    if (HANDSHAKE_ONLY.has(name)) continue
    const value = headers[name]
    copy[name] = typeof value === 'string' && SHARED_VALUES.has(name) ? shared(value) : value
  }
  return copy
}
