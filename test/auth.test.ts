import type { IncomingMessage } from 'node:http'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshServerOptions } from 'meshkit/server'
import { connectClient, createClient, nextEvent, rejectionOf, startServer, urlOf } from './support/harness.js'

const users: Record<string, { id: string; name: string }> = {
  'token-ada': { id: 'ada', name: 'Ada' },
  'token-bob': { id: 'bob', name: 'Bob' },
}

function tokenOf(request: IncomingMessage): string | null {
  return new URL(request.url ?? '/', 'http://localhost').searchParams.get('token')
}

/** A server whose `mesh/authenticate` accepts `{ token }` and answers `whoami` with the connection's user id. */
function authServer(options: MeshServerOptions = {}) {
  return startServer(options, (server) => {
    server.onAuthenticate(async (credentials) => {
      const user = users[(credentials as { token?: string } | undefined)?.token ?? '']
      return user ? { id: user.id, user } : null
    })
    server.registerCommand('whoami', (ctx) => ctx.connection.userId ?? null)
  })
}

describe('authentication at the upgrade', () => {
  it('accepts a user the authenticate option returns, who is then the connection\'s user', async () => {
    const server = await authServer({ authenticate: (request) => users[tokenOf(request) ?? ''] ?? null })
    const client = await connectClient(`${urlOf(server)}?token=token-ada`)
    expect(await client.command('whoami')).toBe('ada')
    const connection = server.connections.get(client.id!)!
    expect(connection.user).toEqual({ id: 'ada', name: 'Ada' })
    expect(await server.isUserOnline('ada')).toBe(true)
  })

  it('refuses with 401 for null, and with the thrown status', async () => {
    const server = await authServer({
      authenticate: (request) => {
        if (tokenOf(request) === 'banned') throw Object.assign(new Error('banned'), { status: 403 })
        return users[tokenOf(request) ?? ''] ?? null
      },
    })
    for (const [token, status] of [['nope', 401], ['banned', 403]] as const) {
      const socket = new WebSocket(`${urlOf(server)}?token=${token}`)
      socket.on('error', () => {})
      const [, response] = (await once(socket, 'unexpected-response')) as [unknown, IncomingMessage]
      expect(response.statusCode).toBe(status)
      socket.terminate()
    }
    const client = createClient(`${urlOf(server)}?token=nope`)
    expect((await rejectionOf(client.connect())).code).toBe(ErrorCode.CONNECTION_FAILED)
  })

  it('logs what the authenticate option throws without a status (a fault, such as its session store being down), with the 401', async () => {
    const fault = new Error('session store unreachable at 10.0.0.7')
    const logged: Array<Record<string, unknown> | undefined> = []
    const at = (_message: string, details?: Record<string, unknown>) => logged.push(details)
    const server = await authServer({
      logger: { warn: at, error: at },
      authenticate: (request) => {
        if (tokenOf(request) === 'banned') throw Object.assign(new Error('banned'), { status: 403 })
        throw fault
      },
    })
    for (const [token, status] of [['banned', 403], ['any', 401]] as const) {
      const socket = new WebSocket(`${urlOf(server)}?token=${token}`)
      socket.on('error', () => {})
      const [, response] = (await once(socket, 'unexpected-response')) as [unknown, IncomingMessage]
      expect(response.statusCode).toBe(status)
      socket.terminate()
    }
    // The deliberate 403 is a refusal, not a fault: only the throw without a status is logged.
    expect(logged.map((details) => details?.error)).toEqual([fault])
  })
})

describe('authentication by message', () => {
  it('resolves with the user object, or {} without sendUserObject', async () => {
    const server = await authServer()
    const client = await connectClient(server)
    expect(await client.command('whoami')).toBeNull()
    expect(await client.authenticate({ token: 'token-ada' })).toEqual({ id: 'ada', name: 'Ada' })
    expect(await client.command('whoami')).toBe('ada')

    const quiet = await authServer({ authentication: { sendUserObject: false } })
    const other = await connectClient(quiet)
    expect(await other.authenticate({ token: 'token-bob' })).toEqual({})
  })

  it('rejects a failure with UNAUTHORIZED and then disconnects for good (disconnectOnFail)', async () => {
    const server = await authServer()
    const client = await connectClient(server, { reconnectInterval: 1 })
    const disconnected = nextEvent<{ code: number }>(client, 'disconnect')
    const closed = nextEvent(client, 'close')
    expect((await rejectionOf(client.authenticate({ token: 'wrong' }))).code).toBe(ErrorCode.UNAUTHORIZED)
    expect((await disconnected).code).toBe(4001)
    await closed
    expect(client.state).toBe('closed')
  })

  it('does not count UNAVAILABLE from onAuthenticate as a failure: no 4001, and the next try is decided', async () => {
    let storeAway = true
    const server = await authServer()
    server.onAuthenticate((credentials) => {
      if (storeAway) throw new MeshError(ErrorCode.UNAVAILABLE, 'session store away')
      const user = users[(credentials as { token: string }).token]
      return user ? { id: user.id, user } : null
    })
    const client = await connectClient(server)
    expect((await rejectionOf(client.authenticate({ token: 'token-ada' }))).code).toBe(ErrorCode.UNAVAILABLE)
    storeAway = false
    expect(await client.authenticate({ token: 'token-ada' })).toEqual({ id: 'ada', name: 'Ada' })
    expect(client.state).toBe('open')
  })

  it('keeps the connection after a failure without disconnectOnFail, and a thrown MeshError keeps its code', async () => {
    const server = await authServer({ authentication: { disconnectOnFail: false } })
    server.onAuthenticate((credentials) => {
      if ((credentials as { token: string }).token === 'expired') throw new MeshError('TOKEN_EXPIRED', 'log in again')
      const user = users[(credentials as { token: string }).token]
      return user ? { id: user.id, user } : null
    })
    const client = await connectClient(server)
    expect((await rejectionOf(client.authenticate({ token: 'wrong' }))).code).toBe(ErrorCode.UNAUTHORIZED)
    expect((await rejectionOf(client.authenticate({ token: 'expired' }))).code).toBe('TOKEN_EXPIRED')
    expect(client.state).toBe('open')
    expect(await client.authenticate({ token: 'token-bob' })).toEqual({ id: 'bob', name: 'Bob' })
  })

  it('refuses re-authenticating as another user, leaving the first user as it was', async () => {
    const server = await authServer()
    const client = await connectClient(server)
    await client.authenticate({ token: 'token-ada' })
    expect((await rejectionOf(client.authenticate({ token: 'token-bob' }))).code).toBe(ErrorCode.FORBIDDEN)
    expect(await client.authenticate({ token: 'token-ada' })).toEqual({ id: 'ada', name: 'Ada' })
    expect(await client.command('whoami')).toBe('ada')
    expect(await server.isUserOnline('ada')).toBe(true)
    expect(await server.isUserOnline('bob')).toBe(false)
  })

  it('closes a connection that does not authenticate within the timeout when authentication is required', async () => {
    const server = await authServer({ authentication: { required: true, timeout: 100 } })
    const late = await connectClient(server, { reconnectInterval: 1 })
    const punctual = await connectClient(server)
    await punctual.authenticate({ token: 'token-ada' })
    const closed = nextEvent(late, 'close')
    expect((await nextEvent<{ code: number }>(late, 'disconnect')).code).toBe(4003)
    await closed
    expect(late.state).toBe('closed')
    expect(await punctual.command('whoami')).toBe('ada')
  })

  it('with required, refuses every command but authentication until authenticated', async () => {
    const server = await authServer({ authentication: { required: true } })
    server.exposeChannel('news')
    const client = await connectClient(server)
    expect((await rejectionOf(client.command('whoami'))).code).toBe(ErrorCode.UNAUTHORIZED)
    expect((await rejectionOf(client.command('no-such-command'))).code).toBe(ErrorCode.UNAUTHORIZED)
    expect((await rejectionOf(client.subscribe('news', () => {}))).code).toBe(ErrorCode.UNAUTHORIZED)
    await client.authenticate({ token: 'token-ada' })
    expect(await client.command('whoami')).toBe('ada')
    expect((await client.subscribe('news', () => {})).success).toBe(true)
  })

  it('authenticates again by itself after a reconnect, before anything else', async () => {
    const first = await authServer()
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    await client.authenticate({ token: 'token-bob' })
    const port = first.port
    const reconnected = nextEvent(client, 'reconnect')
    await first.close()
    const second = await authServer({ port })
    await reconnected
    // Queued behind the automatic authentication on the new socket.
    expect(await client.command('whoami')).toBe('bob')
    expect(await second.isUserOnline('bob')).toBe(true)
  })

  it('refuses bad authentication and sync options at construction', async () => {
    const { MeshServer } = await import('meshkit/server')
    expect(() => new MeshServer({ port: 0, authentication: { timeout: -1 } })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, sync: { enabled: true, maxMessages: 0 } })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, sync: { enabled: true, redeliveryInterval: -5 } })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, authenticate: 'yes' as never })).toThrow(TypeError)
    // Accepted before, then every kept message failed in Redis (XTRIM and PEXPIRE take whole numbers).
    expect(() => new MeshServer({ port: 0, sync: { enabled: true, maxMessages: 1.5 } })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, sync: { enabled: true, maxAge: Infinity } })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, sync: { enabled: true, keepUntilAcknowledged: 'no' as never } })).toThrow(TypeError)
  })

  it('refuses bad sync options of a Dispatcher at construction', async () => {
    const { Dispatcher } = await import('meshkit/server')
    expect(() => new Dispatcher('redis://127.0.0.1:1', { sync: { enabled: true, maxMessages: -1 } })).toThrow(RangeError)
    expect(() => new Dispatcher('redis://127.0.0.1:1', { sync: { enabled: true, maxAge: 0.5 } })).toThrow(RangeError)
  })

  it('reports NOT_ENABLED for online users when they are not tracked', async () => {
    const server = await authServer({ authentication: { storeConnectedUsers: false } })
    expect((await rejectionOf(server.getConnectedUsers())).code).toBe(ErrorCode.NOT_ENABLED)
  })
})
