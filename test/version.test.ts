import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { WebSocket } from 'ws'
import { describe, expect, it } from 'vitest'
import { CloseCode, ErrorCode, PACKAGE_VERSION, type MeshError } from 'meshkit'
import type { WebSocketConstructor } from 'meshkit/client'
import { Subprotocol, VERSION_SUBPROTOCOL_PREFIX } from '../src/shared/protocol.js'
import { createClient, nextEvent, rejectionOf, startServer, urlOf } from './support/harness.js'

/** A `ws` WebSocket that offers another package version than this build's, as an older or newer client would. */
function claimingVersion(version: string): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      const offered = [protocols ?? []].flat().map((protocol) => (protocol.startsWith(VERSION_SUBPROTOCOL_PREFIX) ? VERSION_SUBPROTOCOL_PREFIX + version : protocol))
      super(url, offered)
    }
  } as unknown as WebSocketConstructor
}

describe('package version enforcement (enforceEqualVersions)', () => {
  it('knows its version as package.json states it, without reading package.json at run time', () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(PACKAGE_VERSION).toBe(version)
  })

  it('accepts a client of the same version', async () => {
    const server = await startServer({ enforceEqualVersions: true })
    const client = createClient(server)
    await client.connect()
    expect(client.state).toBe('open')
  })

  it('closes a client of another version with 4009 before authentication; connect() fails with VERSION_MISMATCH', async () => {
    let authenticated = 0
    const server = await startServer({ enforceEqualVersions: true, authenticate: () => ({ id: String(++authenticated) }) })
    const client = createClient(server, { WebSocket: claimingVersion('0.0.1') })
    let disconnects = 0
    client.on('disconnect', () => disconnects++)
    const error = await rejectionOf(client.connect())
    expect(error.code).toBe(ErrorCode.VERSION_MISMATCH)
    expect(error.data).toEqual({ server: PACKAGE_VERSION, client: PACKAGE_VERSION })
    expect(client.state).toBe('closed')
    expect(authenticated).toBe(0)
    expect(server.connections.size).toBe(0)
    // It failed before a hello: there was no session to report as disconnected.
    expect(disconnects).toBe(0)
  })

  it('closes a client that offers no version (with the server version as the reason)', async () => {
    const server = await startServer({ enforceEqualVersions: true })
    const socket = new WebSocket(urlOf(server), [Subprotocol.msgpack])
    socket.on('error', () => {})
    const [code, reason] = (await once(socket, 'close')) as [number, Buffer]
    expect(code).toBe(CloseCode.VERSION_MISMATCH)
    expect(reason.toString()).toBe(PACKAGE_VERSION)
  })

  it('stops reconnecting when the next instance enforces another version', async () => {
    const lenient = await startServer()
    let upgrades = 0
    const strict = await startServer({ enforceEqualVersions: true, authenticate: () => ({ id: String(++upgrades) }) })
    const client = createClient([urlOf(lenient), urlOf(strict)], { WebSocket: claimingVersion('9.9.9'), reconnectInterval: 1, maxReconnectAttempts: 5 })
    await client.connect()
    const failed = nextEvent<{ attempts: number; error?: MeshError }>(client, 'reconnectfailed')
    await lenient.close()
    const { attempts, error } = await failed
    expect(error?.code).toBe(ErrorCode.VERSION_MISMATCH)
    expect(attempts).toBe(1)
    expect(upgrades).toBe(0)
    expect(client.state).toBe('closed')
  })

  it('lets any version in by default', async () => {
    const server = await startServer()
    const client = createClient(server, { WebSocket: claimingVersion('0.0.1') })
    await client.connect()
    expect(client.state).toBe('open')
  })

  it('throws at construction for a non-boolean enforceEqualVersions', async () => {
    const { MeshServer } = await import('meshkit/server')
    expect(() => new MeshServer({ enforceEqualVersions: 'yes' as unknown as boolean })).toThrow(TypeError)
  })
})
