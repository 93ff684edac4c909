import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MeshServer } from 'meshkit/server'
import { recordFrames, useBrowser } from './support/browser.js'
import { buildBrowserClients, type BrowserBuilds } from './support/browser-builds.js'

// The browser test kit itself, on a stand-in page of its own (test/fixtures/browser-page.html)
// rather than the demo: the problem recorder must catch what it claims to, and the browser
// builds must run in a real Chromium, each codec recognisable on the wire.

const browser = useBrowser()
const page = readFileSync(new URL('./fixtures/browser-page.html', import.meta.url))
let builds: BrowserBuilds
let http: Server
let mesh: MeshServer
let origin: string

beforeAll(async () => {
  builds = await buildBrowserClients()
  http = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    const asset = /^\/meshkit\/(client(?:-json)?\.js(?:\.map)?)$/.exec(path)?.[1]
    if (path === '/') return void response.writeHead(200, { 'content-type': 'text/html' }).end(page)
    if (!asset) return void response.writeHead(404).end()
    response.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(join(builds.dir, asset)))
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const address = http.address()
  origin = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
  mesh = new MeshServer({ server: http })
  mesh.registerCommand('echo', (ctx) => ctx.payload)
  await mesh.ready()
}, 60_000)

afterAll(async () => {
  await mesh?.close()
  http?.close()
  builds?.remove()
})

describe('the browser test kit', () => {
  it('records console errors and warnings, uncaught page errors and failed requests, and fails on them', async () => {
    const first = await browser.newPage()
    const second = await browser.newPage()
    await first.goto(`${origin}/`)
    await first.evaluate(() => {
      console.error('an error')
      console.warn('a warning')
      console.log('a log line is not a problem')
      setTimeout(() => {
        throw new Error('thrown')
      })
    })
    // A request to a closed port fails in the network layer.
    await second.goto(`${origin}/`)
    await second.evaluate((url) => fetch(url).catch(() => undefined), 'http://127.0.0.1:1/')
    await expect.poll(() => browser.problems().length).toBeGreaterThanOrEqual(5)
    const problems = browser.problems()
    expect(problems).toEqual(
      expect.arrayContaining([
        'page 1: console.error: an error',
        'page 1: console.warning: a warning',
        'page 1: pageerror: thrown',
        expect.stringMatching(/^page 2: requestfailed: http:\/\/127\.0\.0\.1:1\/ net::ERR_/),
      ]),
    )
    expect(problems.some((line) => line.includes('a log line'))).toBe(false)
    expect(() => browser.expectNoProblems()).toThrow()
    // Only what `allow` names is let through.
    expect(() => browser.expectNoProblems([/^page 1: /])).toThrow()
    browser.expectNoProblems([/^page 1: /, /^page 2: /])
  })

  it.each([
    ['', 'msgpack'],
    ['?codec=json', 'json'],
  ])('the page at /%s runs the browser build with %s, binary frames for msgpack and text for JSON', async (query, codec) => {
    const tab = await browser.newPage()
    const frames = recordFrames(tab)
    await tab.goto(`${origin}/${query}`)
    await tab.waitForFunction(() => 'fixture' in window)
    expect(await tab.textContent('#codec')).toBe(codec)
    const echoed = await tab.evaluate(() => (window as unknown as { fixture: { client: { command(name: string, payload: unknown): Promise<unknown> } } }).fixture.client.command('echo', { text: 'hé', n: 2.5 }))
    expect(echoed).toEqual({ text: 'hé', n: 2.5 })
    await mesh.broadcast('heard', { text: `over ${codec}` })
    await tab.locator('#heard li', { hasText: `over ${codec}` }).waitFor()
    expect(frames.sent.length).toBeGreaterThan(0)
    expect(frames.received.length).toBeGreaterThan(0)
    const binary = codec === 'msgpack'
    for (const payload of [...frames.sent, ...frames.received]) expect(Buffer.isBuffer(payload)).toBe(binary)
    if (!binary) expect(frames.sent.some((payload) => String(payload).includes('"hé"'))).toBe(true)
    browser.expectNoProblems()
  })
})
