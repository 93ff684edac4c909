import { describe, expect, it } from 'vitest'
import { CloseCode, ErrorCode, MeshError } from 'meshkit'
import type { MeshServer } from 'meshkit/server'
import { connectClient, deferred, eventually, nextEvent, recordingLogger, urlOf } from './support/harness.js'
import { rawRedis } from './support/redis-watch.js'
import { uniqueNamespace } from './support/cluster.js'
import { Keys } from '../src/server/store/keys.js'
import { allDisconnected, eventLine, expectedLine, recordEvents, ReportLog, startPortal, startPortalServer } from './support/portals.js'

/** A server that authenticates `{ name }` credentials as that user, with portals on; its namespace is returned alongside. */
async function authenticatingServer(options: Parameters<typeof startPortalServer>[0] = {}): Promise<{ server: MeshServer; namespace: string }> {
  const namespace = uniqueNamespace('portal')
  const server = await startPortalServer({ namespace, ...options }, (created) => {
    created.onAuthenticate((credentials) => {
      const { name } = credentials as { name: string }
      return { id: name.toLowerCase(), user: { name } }
    })
  })
  return { server, namespace }
}

describe('portal events', () => {
  it('reach a portal in the order they happened: connection (with handshake), authentication, messages, disconnection', async () => {
    const { server, namespace } = await authenticatingServer()
    const log = new ReportLog()
    let handshakeQuery: unknown
    const portal = await startPortal(namespace, {}, (created) => {
      recordEvents(created, log)
      created.onConnection((ctx) => void (handshakeQuery = { ...ctx.connection.handshake?.query }))
    })
    const client = await connectClient(urlOf(server, '/?team=blue'))
    const id = client.id!
    await client.authenticate({ name: 'Ada' })
    for (let seq = 0; seq < 300; seq++) client.send('step', { seq })
    await client.close()
    await log.until(allDisconnected([id]))

    const line = expectedLine(300, true)
    expect(eventLine(log.reports, id)).toEqual(line)
    const reports = log.reports.filter((report) => report.connection === id)
    expect(new Set(reports.map((report) => report.portal))).toEqual(new Set([portal.id]))
    expect(reports.every((report) => report.instance === server.instanceId)).toBe(true)
    expect(handshakeQuery).toEqual({ team: 'blue' })
    // Who the connection is travels with every event once known.
    expect(reports[0]!.userId).toBeUndefined()
    expect(reports.slice(1).every((report) => report.userId === 'ada')).toBe(true)
    const disconnection = reports.at(-1)!
    expect([disconnection.code, disconnection.reason]).toEqual([1000, 'client closed'])
    expect(new Set(reports.map((report) => report.eventId)).size).toBe(reports.length)
    // A forwarded message has a handler: it is not counted as unhandled.
    expect(server.stats.unhandledMessages).toBe(0)
  })

  it('carry the user of an upgrade-authenticated connection in its connection event, with no separate authentication', async () => {
    const namespace = uniqueNamespace('portal')
    const server = await startPortalServer({ namespace, authenticate: () => ({ id: 'grace', name: 'Grace' }) })
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    const client = await connectClient(server)
    const id = client.id!
    client.send('hello', { seq: 0 })
    await client.close()
    await log.until(allDisconnected([id]))
    expect(eventLine(log.reports, id)).toEqual(expectedLine(1))
    expect(log.reports.every((report) => report.userId === 'grace')).toBe(true)
  })

  it('include the disconnections of a server that closes: they are written before it lets go of Redis', async () => {
    const { server, namespace } = await authenticatingServer()
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    const clients = await Promise.all([0, 1, 2].map(() => connectClient(server, { shouldReconnect: false })))
    const ids = clients.map((client) => client.id!)
    for (const client of clients) client.send('step', { seq: 0 })
    await server.close()
    await log.until(allDisconnected(ids))
    for (const id of ids) expect(eventLine(log.reports, id)).toEqual(expectedLine(1))
    expect(new Set(log.reports.filter((report) => report.kind === 'disconnection').map((report) => report.code))).toEqual(new Set([CloseCode.GOING_AWAY]))
  })

  it('leave out messages that global middleware refused, and carry what it rewrote', async () => {
    const { server, namespace } = await authenticatingServer()
    server.addMiddleware((ctx) => {
      if (ctx.message === 'blocked') throw new MeshError(ErrorCode.FORBIDDEN, 'not this one')
      if (ctx.message === 'rewrite') ctx.payload = { seq: 1 }
    })
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    const client = await connectClient(server)
    const id = client.id!
    client.send('step', { seq: 0 })
    client.send('blocked', { seq: 99 })
    client.send('rewrite', { seq: 'original' })
    client.send('step', { seq: 2 })
    await client.close()
    await log.until(allDisconnected([id]))
    expect(eventLine(log.reports, id)).toEqual(expectedLine(3))
    expect(log.reports.filter((report) => report.type !== undefined).map((report) => report.type)).toEqual(['step', 'rewrite', 'step'])
    expect(server.stats.droppedMessages).toBe(1)
  })

  it('leave out messages of an unauthenticated connection when authentication is required', async () => {
    const { server, namespace } = await authenticatingServer({ authentication: { required: true } })
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    const client = await connectClient(server)
    const id = client.id!
    client.send('step', { seq: 'too early' })
    await client.authenticate({ name: 'Lin' })
    client.send('step', { seq: 0 })
    await client.close()
    await log.until(allDisconnected([id]))
    expect(eventLine(log.reports, id)).toEqual(expectedLine(1, true))
    expect(server.stats.unauthorizedMessages).toBe(1)
  })

  it('reach every group: each group handles every event once, under the same event ids', async () => {
    const { server, namespace } = await authenticatingServer()
    const billing = new ReportLog()
    const audit = new ReportLog()
    // Two portals share the billing group's load; the audit group has one.
    await startPortal(namespace, { group: 'billing' }, (created) => recordEvents(created, billing))
    await startPortal(namespace, { group: 'billing' }, (created) => recordEvents(created, billing))
    await startPortal(namespace, { group: 'audit' }, (created) => recordEvents(created, audit))
    const clients = await Promise.all([0, 1, 2, 3].map(() => connectClient(server)))
    const ids = clients.map((client) => client.id!)
    for (let seq = 0; seq < 25; seq++) for (const client of clients) client.send('step', { seq })
    await Promise.all(clients.map((client) => client.close()))
    await Promise.all([billing.until(allDisconnected(ids)), audit.until(allDisconnected(ids))])

    for (const log of [billing, audit]) {
      for (const id of ids) expect(eventLine(log.reports, id)).toEqual(expectedLine(25))
      expect(log.reports).toHaveLength(ids.length * 27)
    }
    const eventIds = (log: ReportLog): string[] => log.reports.map((report) => report.eventId).sort()
    expect(eventIds(billing)).toEqual(eventIds(audit))
    expect(new Set(eventIds(audit)).size).toBe(audit.reports.length)
  })

  it('carry message data as the server\'s own handlers see it: nested values, binary, null and none', async () => {
    const { server, namespace } = await authenticatingServer()
    const local: unknown[] = []
    server.onMessage('*', (ctx) => void local.push(ctx.data))
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    const values = [{ nested: { list: [1, 'two', { three: 3 }] } }, new Uint8Array([0, 1, 254, 255]), null, undefined, 'text', 0, false]
    for (const codec of ['msgpack', 'json'] as const) {
      const client = await connectClient(server, { codec })
      const id = client.id!
      for (const value of values) client.send('value', value)
      await client.close()
      await log.until(allDisconnected([id]))
      const forwarded = log.reports.filter((report) => report.connection === id && report.kind === 'message').map((report) => report.data)
      // JSON clients cannot send bytes: compare with what the server's own handler got from the same client.
      expect(forwarded).toEqual(local.splice(0))
      // Bytes arrive as a Buffer (a Uint8Array), on the server as on the portal.
      const plain = forwarded.map((value) => (value instanceof Uint8Array ? new Uint8Array(value) : value))
      if (codec === 'msgpack') expect(plain).toEqual(values)
    }
  })

  it('keep a bounded backlog while no portal reads: what is trimmed is counted and logged, what is kept reaches a portal that starts later', async () => {
    const { logger, entries } = recordingLogger()
    const namespace = uniqueNamespace('portal')
    // 16 partitions (the default) keep 2 events each.
    const server = await startPortalServer({ namespace, logger, portal: { enabled: true, maxBacklog: 32 } })
    const clients = await Promise.all(Array.from({ length: 8 }, () => connectClient(server)))
    for (let seq = 0; seq < 25; seq++) for (const client of clients) client.send('step', { seq })
    const written = clients.length * 26
    const redis = await rawRedis()
    const keys = new Keys(namespace)
    const lengths = async (): Promise<number[]> => Promise.all(Array.from({ length: 16 }, (_, partition) => redis.xlen(keys.portalEvents(partition))))
    // The appends run behind the messages; they are all in once every event is either kept or counted as dropped.
    let kept = 0
    await eventually(async () => {
      kept = (await lengths()).reduce((sum, length) => sum + length, 0)
      expect(kept + server.stats.portalEventsDropped).toBe(written)
    })
    expect(Math.max(...(await lengths()))).toBeLessThanOrEqual(2)
    expect(kept).toBeLessThanOrEqual(32)
    expect(server.stats.portalEventsDropped).toBeGreaterThanOrEqual(written - 32)
    const warnings = entries.filter((entry) => entry.level === 'warn')
    expect(warnings.length).toBeGreaterThanOrEqual(1)
    // Rate-limited: not one warning per dropped event.
    expect(warnings.length).toBeLessThan(server.stats.portalEventsDropped / 10)

    // A group created now starts from the oldest kept entry: a late portal handles exactly what was kept.
    const log = new ReportLog()
    await startPortal(namespace, {}, (created) => recordEvents(created, log))
    await log.until((reports) => reports.length === kept)
    expect(log.reports.every((report) => report.kind === 'message')).toBe(true)
    for (const client of clients) {
      const seqs = log.reports.filter((report) => report.connection === client.id && report.kind === 'message').map((report) => (report.data as { seq: number }).seq)
      // The newest of each connection's events survive, in order.
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, index) => 25 - seqs.length + index))
    }
  })
})

describe('a portal answering clients', () => {
  it('reaches a connection with ctx.connection.send, users with dispatch (and exclude), connections with sendTo, rooms with broadcastRoom, channels with writeChannel, on any instance', async () => {
    const { server, namespace } = await authenticatingServer()
    const { server: other } = await authenticatingServer({ namespace })
    for (const each of [server, other]) {
      each.exposeRoom('lobby')
      each.exposeChannel('news')
    }
    const portal = await startPortal(namespace, {}, (created) => {
      created.onMessage('ping', (ctx) => ctx.connection.send('pong', ctx.data))
    })
    const ada = await connectClient(server)
    const bob = await connectClient(other)
    await ada.authenticate({ name: 'Ada' })
    await bob.authenticate({ name: 'Bob' })

    const pong = nextEvent(ada, 'pong')
    ada.send('ping', { n: 1 })
    expect(await pong).toEqual({ n: 1 })

    const toAda = nextEvent(ada, 'note')
    const toBob = nextEvent(bob, 'note', 5_000, (payload) => payload === 'fence')
    const bobNotes: unknown[] = []
    bob.on('note', (payload) => void bobNotes.push(payload))
    await portal.dispatch('note', 'users', ['ada', 'bob'], ['bob'])
    await portal.dispatch('note', 'fence', ['bob'])
    expect(await toAda).toBe('users')
    await toBob
    // Deliveries from one sender arrive in order: the excluded user's copy would have come first.
    expect(bobNotes).toEqual(['fence'])

    const direct = nextEvent(bob, 'direct')
    await portal.sendTo([bob.id!], 'direct', { to: 'bob' })
    expect(await direct).toEqual({ to: 'bob' })

    await ada.joinRoom('lobby')
    await bob.joinRoom('lobby')
    const roomForAda = nextEvent(ada, 'room')
    const roomFence = nextEvent(bob, 'room-fence')
    const bobRoom: unknown[] = []
    bob.on('room', (payload) => void bobRoom.push(payload))
    await portal.broadcastRoom('lobby', 'room', 'hello lobby', [bob.id!])
    await portal.sendTo([bob.id!], 'room-fence')
    expect(await roomForAda).toBe('hello lobby')
    await roomFence
    expect(bobRoom).toEqual([])

    const news = deferred<unknown>()
    await ada.subscribe('news', (message) => news.resolve(message))
    const offset = await portal.writeChannel('news', { headline: 'first' }, 10)
    expect(typeof offset).toBe('number')
    expect(await news.promise).toEqual({ headline: 'first' })
    const { history } = await bob.subscribe('news', () => {}, { historyLimit: 10 })
    expect(history).toEqual([{ headline: 'first' }])
  })
})
