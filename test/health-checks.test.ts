import { createServer, request as httpRequest, type Server } from 'node:http'
import { once } from 'node:events'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { MeshServer } from 'meshkit/server'
import { eventually, startServer } from './support/harness.js'
import { uniqueNamespace } from './support/cluster.js'
import { startRedisServer } from './support/redis-server.js'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function get(port: number, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body += chunk))
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('health checks on meshkit\'s own HTTP server', () => {
  it('answers /healthz and /readyz, and 426 elsewhere as before', async () => {
    const server = await startServer()
    const health = await get(server.port, '/healthz')
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body)).toEqual({ ok: true })
    expect(health.headers['cache-control']).toBe('no-store')
    const ready = await get(server.port, '/readyz?verbose=1')
    expect(ready.status).toBe(200)
    expect(JSON.parse(ready.body)).toEqual({ ready: true })
    expect(server.readiness).toEqual({ ready: true, reasons: [] })
    const head = await get(server.port, '/readyz', 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    expect((await get(server.port, '/readyz', 'POST')).status).toBe(405)
    expect((await get(server.port, '/health')).status).toBe(426)
  })

  it('is `starting` until it listens and has joined its store, `closed` once closing', async () => {
    const server = new MeshServer({ host: '127.0.0.1', port: 0 })
    onTestFinished(() => server.close())
    expect(server.readiness).toEqual({ ready: false, reasons: ['starting'] })
    await server.ready()
    expect(server.readiness.ready).toBe(true)
    const closed = server.close()
    expect(server.readiness).toEqual({ ready: false, reasons: ['closed'] })
    await closed
  })

  it('serves no health routes with healthChecks: false', async () => {
    const server = await startServer({ healthChecks: false })
    expect((await get(server.port, '/healthz')).status).toBe(426)
    expect((await get(server.port, '/readyz')).status).toBe(426)
    // Readiness itself is still there to read.
    expect(server.readiness.ready).toBe(true)
  })

  it('refuses a healthChecks that is not a boolean, and a bad drain, before closing anything', async () => {
    expect(() => new MeshServer({ healthChecks: 'yes' as never })).toThrow(TypeError)
    const server = await startServer()
    expect(() => server.close({ drain: -1 })).toThrow(RangeError)
    expect(() => server.close({ drain: Number.NaN })).toThrow(RangeError)
    expect(() => server.close({ drain: Infinity })).toThrow(RangeError)
    expect(() => server.close({ drian: 10 } as never)).toThrow(TypeError)
    expect(server.readiness.ready).toBe(true)
  })
})

describe('health checks on a server of the user\'s', () => {
  it('answers only when mounted with httpHandler(), as plain Node and as middleware', async () => {
    let fallthrough = 0
    let handle: ((req: never, res: never, next?: () => void) => boolean) | undefined
    const http: Server = createServer((req, res) => {
      handle!(req as never, res as never, () => {
        fallthrough++
        res.writeHead(404)
        res.end()
      })
    })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => http.close(() => resolve())))
    const server = await startServer({ server: http })
    handle = server.httpHandler()
    const port = (http.address() as { port: number }).port
    const ready = await get(port, '/readyz')
    expect(ready.status).toBe(200)
    expect(JSON.parse(ready.body)).toEqual({ ready: true })
    expect((await get(port, '/healthz')).status).toBe(200)
    expect((await get(port, '/elsewhere')).status).toBe(404)
    expect(fallthrough).toBe(1)
  })
})

describe('readiness and Redis', () => {
  it('turns 503 store-unreachable while Redis is down, and ready again when it is back; /healthz stays 200', async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('health'), redisTimeout: 500 })
    expect((await get(server.port, '/readyz')).status).toBe(200)
    await redis.stop()
    const down = await eventually(async () => {
      const answer = await get(server.port, '/readyz')
      expect(answer.status).toBe(503)
      return answer
    })
    expect(JSON.parse(down.body)).toEqual({ ready: false, reasons: ['store-unreachable'] })
    expect((await get(server.port, '/healthz')).status).toBe(200)
    const again = await startRedisServer(redis.port)
    onTestFinished(() => again.stop())
    await eventually(async () => expect((await get(server.port, '/readyz')).status).toBe(200), 15_000)
    expect(server.readiness).toEqual({ ready: true, reasons: [] })
  })

  it('a Redis-backed instance is ready once joined', async () => {
    const server = await startServer({ redis: inject('redisUrl'), namespace: uniqueNamespace('health') })
    expect(server.readiness).toEqual({ ready: true, reasons: [] })
  })
})
