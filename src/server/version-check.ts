import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocketServer } from 'ws'
import { CloseCode, VERSION_SUBPROTOCOL_PREFIX } from '../shared/protocol.js'
import { PACKAGE_VERSION } from '../shared/version.js'

/**
 * The package version a client offered as its `meshkit.version.<version>`
 * subprotocol; `undefined` for a client that offered none (an older meshkit client,
 * or one written from docs/protocol.md without it).
 */
export function clientVersionOf(request: IncomingMessage): string | undefined {
  const offered = request.headers['sec-websocket-protocol']
  if (offered === undefined) return undefined
  for (const protocol of offered.split(',')) {
    const trimmed = protocol.trim()
    if (trimmed.startsWith(VERSION_SUBPROTOCOL_PREFIX)) return trimmed.slice(VERSION_SUBPROTOCOL_PREFIX.length)
  }
  return undefined
}

/** Whether an upgrade comes from a client of exactly this server's meshkit version; one that does not say is not. */
export function isSameVersion(request: IncomingMessage): boolean {
  return clientVersionOf(request) === PACKAGE_VERSION
}

/**
 * Completes the upgrade only to close it with 4009 and this server's version as the
 * reason: an HTTP refusal would reach the client as a failed connection, which it
 * retries, while 4009 tells it that retrying cannot help. It runs before
 * authentication, so a refused client costs no authenticator call and no store write.
 */
export function refuseVersion(wss: WebSocketServer, request: IncomingMessage, socket: Duplex, head: Buffer): void {
  wss.handleUpgrade(request, socket, head, (ws) => {
    // A socket error with no listener would be thrown, ending the process.
    ws.on('error', ignore)
    ws.close(CloseCode.VERSION_MISMATCH, PACKAGE_VERSION)
  })
}

function ignore(): void {}
