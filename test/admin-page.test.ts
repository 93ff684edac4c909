import { createServer, type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { AdminHandlerOptions, MeshServer } from 'meshkit/server'
import { connectClient, recordingLogger, startServer } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'
import { uniqueNamespace } from './support/cluster.js'

const SECRET = `Basic ${Buffer.from('ops:secret').toString('base64')}`

/** An HTTP server of the "user" that mounts the page and answers 404 for everything else; resolves with its base URL. */
async function mount(server: MeshServer, options: Partial<AdminHandlerOptions> = {}): Promise<{ base: string; passedOn: string[] }> {
  const handle = server.adminHandler({ authorize: (request: IncomingMessage) => request.headers.authorization === SECRET, ...options })
  const passedOn: string[] = []
  const http = createServer((request, response) => {
    if (handle(request, response)) return
    passedOn.push(request.url ?? '')
    response.writeHead(404).end()
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  onTestFinished(() => new Promise<void>((resolve) => http.close(() => resolve())))
  return { base: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, passedOn }
}

describe('server.adminHandler()', () => {
  it('refuses without authorization: 401 with a Basic challenge when no credentials came, 403 for wrong ones or a throwing check', async () => {
    const server = await startServer()
    const { base } = await mount(server)
    const anonymous = await fetch(`${base}/meshkit/admin`)
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /)
    expect(await anonymous.text()).not.toContain(server.instanceId)
    const wrong = await fetch(`${base}/meshkit/admin`, { headers: { authorization: 'Basic bm9wZTpub3Bl' } })
    expect(wrong.status).toBe(403)
    expect(await wrong.text()).not.toContain(server.instanceId)

    const { logger, entries } = recordingLogger()
    const throwing = await startServer({ logger })
    const { base: other } = await mount(throwing, { authorize: () => { throw new Error('auth backend down') } })
    expect((await fetch(`${other}/meshkit/admin`, { headers: { authorization: SECRET } })).status).toBe(403)
    expect(entries.some((entry) => entry.level === 'error' && entry.message === 'admin page authorize failed')).toBe(true)
  })

  it('serves the view as HTML with every name escaped, no script and a policy that forbids loading anything', async () => {
    const server = await startServer()
    server.exposeRoom(/./)
    const client = await connectClient(server)
    await server.addToRoom('<script>alert(1)</script>', client.id!)
    await server.addToRoom('lobby & "friends"', client.id!)
    const { base } = await mount(server)

    const response = await fetch(`${base}/meshkit/admin?anything=1`, { headers: { authorization: SECRET } })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'")
    const html = await response.text()
    expect(html).toContain(server.instanceId)
    expect(html).toContain('&#60;script&#62;alert(1)&#60;/script&#62;')
    expect(html).toContain('lobby &#38; &#34;friends&#34;')
    expect(html).not.toMatch(/<script|\bsrc=|\bhref=/i)
  })

  it('passes other paths on (to next, when given) and answers only GET and HEAD', async () => {
    const server = await startServer()
    const { base, passedOn } = await mount(server, { path: '/ops' })
    expect((await fetch(`${base}/meshkit/admin`, { headers: { authorization: SECRET } })).status).toBe(404)
    expect((await fetch(`${base}/ops/more`)).status).toBe(404)
    expect(passedOn).toEqual(['/meshkit/admin', '/ops/more'])
    const post = await fetch(`${base}/ops`, { method: 'POST', headers: { authorization: SECRET } })
    expect(post.status).toBe(405)
    const head = await fetch(`${base}/ops`, { method: 'HEAD', headers: { authorization: SECRET } })
    expect(head.status).toBe(200)

    const handle = server.adminHandler({ authorize: () => true })
    let nextCalls = 0
    expect(handle({ url: '/elsewhere', method: 'GET', headers: {} } as IncomingMessage, {} as never, () => nextCalls++)).toBe(false)
    expect(nextCalls).toBe(1)
    expect(() => server.adminHandler({} as AdminHandlerOptions)).toThrow(TypeError)
  })

  it('answers 503 with the error code while the cluster cannot be inspected', async () => {
    const redis = await startRedisServer()
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('admin-outage'), redisTimeout: 500 })
    const { base } = await mount(server)
    expect((await fetch(`${base}/meshkit/admin`, { headers: { authorization: SECRET } })).status).toBe(200)
    await redis.stop()
    const response = await fetch(`${base}/meshkit/admin`, { headers: { authorization: SECRET } })
    expect(response.status).toBe(503)
    expect(await response.text()).toContain('UNAVAILABLE')
  })
})
