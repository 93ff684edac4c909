import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createContext, runInContext, type Context } from 'node:vm'
import { build } from 'tsup'
import { WebSocket as NodeWebSocket } from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import browserBuilds from '../tsup.browser.config.js'
import { eventually, startServer, urlOf } from './support/harness.js'

// The browser builds, made from the real config into a directory of this file's own
// (package.test.ts rebuilds dist/ in parallel, cleaning it first), then run in a V8
// context that holds only what a browser page has: no process, Buffer, require, module.

const out = mkdtempSync(join(tmpdir(), 'meshkit-browser-build-'))
const sources: Record<string, string> = {}

beforeAll(async () => {
  for (const options of browserBuilds as unknown as object[]) {
    await build({ ...options, outDir: out, sourcemap: false, silent: true, config: false })
  }
  for (const name of ['client', 'client-json']) sources[name] = readFileSync(join(out, `${name}.js`), 'utf8')
}, 60_000)

afterAll(() => rmSync(out, { recursive: true, force: true }))

const trailingExport = /export\s*\{([^}]*)\};?\s*$/

interface BrowserSocket {
  readyState: number
  binaryType: string
  protocol: string
  onopen: ((event: object) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null
  onerror: ((event: object) => void) | null
  send(data: string | ArrayBufferView): void
  close(code?: number, reason?: string): void
}

/**
 * A WebSocket with the browser's surface only (no `terminate`, `on`, `_socket`), over
 * `ws`. Binary messages arrive as ArrayBuffers of the page's own realm, as in a browser.
 */
function browserWebSocket(context: Context): unknown {
  const toPageBuffer = runInContext('(bytes) => { const copy = new Uint8Array(bytes.length); copy.set(bytes); return copy.buffer }', context) as (bytes: Uint8Array) => ArrayBuffer
  return class implements BrowserSocket {
    binaryType = 'blob'
    onopen: BrowserSocket['onopen'] = null
    onmessage: BrowserSocket['onmessage'] = null
    onclose: BrowserSocket['onclose'] = null
    onerror: BrowserSocket['onerror'] = null
    readonly #socket: NodeWebSocket
    constructor(url: string, protocols?: string | string[]) {
      this.#socket = new NodeWebSocket(url, protocols)
      this.#socket.binaryType = 'nodebuffer'
      this.#socket.on('open', () => this.onopen?.({}))
      this.#socket.on('message', (data: Buffer, isBinary: boolean) => this.onmessage?.({ data: isBinary ? toPageBuffer(data) : data.toString() }))
      this.#socket.on('close', (code, reason) => this.onclose?.({ code, reason: reason.toString(), wasClean: true }))
      this.#socket.on('error', () => this.onerror?.({}))
    }
    get readyState(): number {
      return this.#socket.readyState
    }
    get protocol(): string {
      return this.#socket.protocol
    }
    send(data: string | ArrayBufferView): void {
      this.#socket.send(typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    }
    close(code?: number, reason?: string): void {
      this.#socket.close(code, reason)
    }
  }
}

// The page realm's exports, used as a page script would use them.
type PageExports = Record<string, any>

/** Runs a build as a page would: its own realm, browser globals only; answers its exports. */
function loadInPage(name: string): { exports: PageExports; context: Context } {
  const source = sources[name] as string
  const match = trailingExport.exec(source)
  expect(match).not.toBeNull()
  const globals = { setTimeout, clearTimeout, setInterval, clearInterval, queueMicrotask, structuredClone, performance, TextEncoder, TextDecoder, URL }
  const context = createContext({ ...globals })
  runInContext('globalThis.window = globalThis', context)
  context.WebSocket = browserWebSocket(context)
  const names = (match![1] as string).split(',').map((part) => part.trim().split(/\s+as\s+/))
  const body = source.slice(0, match!.index) + `;globalThis.__exports = {${names.map(([local, exported]) => `${exported ?? local}: ${local}`).join(',')}}`
  runInContext(body, context, { filename: `${name}.js` })
  return { exports: context.__exports as PageExports, context }
}

describe('browser build', () => {
  it.each(['client', 'client-json'])('%s.js is one self-contained module: no imports, no Node built-ins, no require, no commandSync worker', (name) => {
    const source = sources[name] as string
    // Assert on booleans: a failed toMatch would print the whole bundle.
    const has = (pattern: RegExp): boolean => pattern.test(source)
    expect(has(/\bnode:/)).toBe(false)
    expect(has(/\brequire\s*\(/)).toBe(false)
    expect(has(/\bimport\s*\(/)).toBe(false)
    expect(has(/(^|[;}\s])import\s*[\w{*"']/)).toBe(false)
    expect(has(/worker_threads|getBuiltinModule|createRequire/)).toBe(false)
    // Every `process` use sits beside a `typeof process` check (Node-only tuning in the transport).
    const uses = source.match(/\bprocess\b/g)?.length ?? 0
    const guards = source.match(/typeof process\b/g)?.length ?? 0
    expect(guards).toBeGreaterThan(0)
    expect(uses).toBeLessThanOrEqual(guards * 2)
    expect(source.match(/export\s*\{/g)).toHaveLength(1)
    expect(has(trailingExport)).toBe(true)
  })

  it('client-json.js has no MessagePack code, client.js has it', () => {
    expect(/MessagePack/.test(sources['client'] as string)).toBe(true)
    expect(/MessagePack/.test(sources['client-json'] as string)).toBe(false)
    expect((sources['client-json'] as string).length).toBeLessThan((sources['client'] as string).length * 0.6)
  })

  it.each([
    ['client', 'msgpack'],
    ['client', 'json'],
    ['client-json', 'json'],
  ] as const)('%s.js with %s runs commands, rooms and channels in a page realm with no Node globals', async (name, codec) => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ctx.payload)
    server.exposeRoom('lobby')
    server.exposeChannel('news')
    await server.writeChannel('news', { n: 1 }, 10)
    const { exports: page, context } = loadInPage(name)
    expect(runInContext('typeof process + typeof Buffer + typeof require + typeof module', context)).toBe('undefinedundefinedundefinedundefined')
    const client = new page.MeshClient(urlOf(server), { codec })
    try {
      await client.connect()
      expect(await client.command('echo', { text: 'hi', list: [1, 2.5, null] })).toEqual({ text: 'hi', list: [1, 2.5, null] })
      expect(await client.joinRoom('lobby')).toBe(true)
      const live: unknown[] = []
      const subscribed = await client.subscribe('news', (message: unknown) => live.push(message), { historyLimit: 5 })
      expect(subscribed).toEqual({ success: true, history: [{ n: 1 }] })
      const heard = new Promise((resolve) => client.on('hello', resolve))
      await server.broadcastRoom('lobby', 'hello', { from: 'server' })
      expect(await heard).toEqual({ from: 'server' })
      await server.writeChannel('news', { n: 2 }, 10)
      await eventually(async () => expect(live).toEqual([{ n: 2 }]))
      // commandSync needs Node's worker threads: the browser build refuses it.
      let refused: { code?: string } | undefined
      try {
        client.commandSync('echo', 1)
      } catch (error) {
        refused = error as { code?: string }
      }
      expect(refused).toBeInstanceOf(page.MeshError)
      expect(refused?.code).toBe(page.ErrorCode.NOT_SUPPORTED)
    } finally {
      await client.close()
    }
  })

  it('client-json.js refuses the msgpack codec at construction, so a page that forgets codec: "json" learns at once', () => {
    const { exports: page, context } = loadInPage('client-json')
    const PageRangeError = runInContext('RangeError', context) as ErrorConstructor
    expect(() => new page.MeshClient('ws://127.0.0.1:1')).toThrow(PageRangeError)
    expect(() => new page.MeshClient('ws://127.0.0.1:1', { codec: 'msgpack' })).toThrow(PageRangeError)
    expect(() => new page.MeshClient('ws://127.0.0.1:1', { codec: 'json' })).not.toThrow()
  })
})
