import type { EventEmitter } from 'node:events'
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import { Subprotocol, SyncSubprotocol } from '../shared/protocol.js'

// Side channel subprotocols reach here only from side channel upgrades (see `syncProtocolOf`).
const knownSubprotocols = new Map<string, string>([...Object.values(Subprotocol), ...Object.values(SyncSubprotocol)].map((name) => [name, name]))

/**
 * The first subprotocol the client offered that meshkit speaks; none means msgpack.
 * Answers meshkit's own copy of the name: the offered one is a slice of the request's
 * header, and `ws` keeps what this returns for the socket's life (with the header under it).
 */
export function pickSubprotocol(offered: Set<string>): string | false {
  for (const protocol of offered) {
    const known = knownSubprotocols.get(protocol)
    if (known !== undefined) return known
  }
  return false
}

export function pathOf(url: string | undefined): string {
  if (!url) return '/'
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/** The path each meshkit upgrade listener serves, so that meshkit servers sharing an HTTP server can tell an upgrade none of them serves. */
const servedPaths = new WeakMap<object, string>()

export function servesPath(listener: object, path: string): void {
  servedPaths.set(listener, path)
}

/**
 * Whether an upgrade on `path`, which `listener` does not serve, is left unanswered
 * by everyone else on a server of the user's: every `upgrade` listener is meshkit's
 * and none serves the path (checked at the upgrade, so listeners added later count).
 * The first of them answers it, so that it is answered once.
 */
export function isUnclaimedUpgrade(http: EventEmitter, listener: object, path: string): boolean {
  const listeners = http.listeners('upgrade')
  return listeners[0] === listener && listeners.every((other) => {
    const served = servedPaths.get(other)
    return served !== undefined && served !== path
  })
}

/** `retryAfter`: seconds, sent as `Retry-After` (a draining instance: try again, elsewhere). */
export function refuseUpgrade(socket: Duplex, status: number, text: string, retryAfter?: number): void {
  const retry = retryAfter === undefined ? '' : `Retry-After: ${retryAfter}\r\n`
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${retry}Content-Length: 0\r\n\r\n`)
}

/** What the server's own HTTP server says to requests that are not WebSocket upgrades. */
export function answerPlainHttp(_request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' })
  response.end('meshkit: this endpoint speaks WebSocket\n')
}

/** Resolves once the server listens (starting it when `listen` is given), rejects with the listen error. */
export function listening(http: HttpServer | HttpsServer, listen?: () => void): Promise<void> {
  if (!listen && http.listening) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      http.off('listening', onListening)
      reject(error)
    }
    const onListening = (): void => {
      http.off('error', onError)
      resolve()
    }
    http.once('error', onError)
    http.once('listening', onListening)
    listen?.()
  })
}
