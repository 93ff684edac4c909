import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { describe, expect, it, onTestFinished } from 'vitest'
import { HttpRoutes, type RouteHandler } from '../src/server/http-routes.js'
import { recordingLogger } from './support/harness.js'

/** A real HTTP server answering with `routes.listener`, as meshkit's own does. */
async function serve(routes: HttpRoutes): Promise<string> {
  const http = createServer(routes.listener)
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  onTestFinished(() => {
    http.closeAllConnections()
    return new Promise<void>((resolve) => http.close(() => resolve()))
  })
  const address = http.address()
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
}

describe('HttpRoutes', () => {
  it('answers its exact paths (GET and HEAD, any query string), 405 to other methods, 426 to everything else', async () => {
    const routes = new HttpRoutes({})
    routes.add('/ping', (_request, response) => {
      response.writeHead(200, { 'Content-Type': 'text/plain' })
      response.end('pong')
    })
    const base = await serve(routes)
    const ok = await fetch(`${base}/ping?probe=1`)
    expect([ok.status, await ok.text()]).toEqual([200, 'pong'])
    expect((await fetch(`${base}/ping`, { method: 'HEAD' })).status).toBe(200)
    const post = await fetch(`${base}/ping`, { method: 'POST' })
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD'])
    for (const path of ['/', '/ping/', '/pingx']) {
      const other = await fetch(`${base}${path}`)
      expect([other.status, other.headers.get('upgrade')]).toEqual([426, 'websocket'])
    }
  })

  it('turns a handler that throws or rejects into a logged 500, and the server keeps answering', async () => {
    const { logger, entries } = recordingLogger()
    const routes = new HttpRoutes(logger)
    routes.add('/throws', () => {
      throw new Error('sync bug')
    })
    routes.add('/rejects', async () => {
      throw new Error('async bug')
    })
    // Returns the response (what `res.end()` returns) to a caller typed for void, as plain JavaScript may.
    routes.add('/fine', ((_request: IncomingMessage, response: ServerResponse) => response.end('fine')) as unknown as RouteHandler)
    const base = await serve(routes)
    expect((await fetch(`${base}/throws`)).status).toBe(500)
    expect((await fetch(`${base}/rejects`)).status).toBe(500)
    expect(await (await fetch(`${base}/fine`)).text()).toBe('fine')
    expect(entries.filter((entry) => entry.level === 'error')).toHaveLength(2)
  })

  it('refuses a path served twice or not starting with "/" (a programming error, at once)', () => {
    const routes = new HttpRoutes({})
    routes.add('/metrics', () => {})
    expect(() => routes.add('/metrics', () => {})).toThrow(Error)
    expect(() => routes.add('metrics', () => {})).toThrow(RangeError)
    expect(routes.has('/metrics')).toBe(true)
  })
})
