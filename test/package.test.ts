import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { installPacked, packInto, type PackedPackage } from './support/packed-install.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const dist = join(root, 'dist')

/** Runs a script in a fresh Node process with the repository as cwd, so `meshkit/*` self-references. */
async function node(args: string[]): Promise<unknown> {
  const { stdout } = await run(process.execPath, args, { cwd: root, timeout: 30_000 })
  return JSON.parse(stdout.trim().split('\n').at(-1) as string)
}

interface ImportGraph {
  /** Files reached, relative to dist/. */
  files: string[]
  /** Bare specifiers (packages and built-ins), with how they were imported. */
  packages: Map<string, Set<'static' | 'dynamic'>>
}

const staticImport = /^\s*(?:import|export)\b[^;'"`]*?\bfrom\s*["']([^"']+)["']/gm
const sideEffectImport = /^\s*import\s*["']([^"']+)["']/gm
const dynamicImport = /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g

/** Follows the imports of an ESM file of dist/ through the relative files it reaches (only what loads at once, without `dynamic`). */
function importGraph(entry: string, dynamic = true): ImportGraph {
  const graph: ImportGraph = { files: [], packages: new Map() }
  const pending = [resolve(dist, entry)]
  const seen = new Set<string>()
  while (pending.length > 0) {
    const file = pending.pop() as string
    if (seen.has(file)) continue
    seen.add(file)
    graph.files.push(relative(dist, file))
    const text = readFileSync(file, 'utf8')
    const specifiers: Array<[string, 'static' | 'dynamic']> = [
      ...[...text.matchAll(staticImport)].map((match) => [match[1], 'static'] as [string, 'static']),
      ...[...text.matchAll(sideEffectImport)].map((match) => [match[1], 'static'] as [string, 'static']),
      ...(dynamic ? [...text.matchAll(dynamicImport)].map((match) => [match[1], 'dynamic'] as [string, 'dynamic']) : []),
    ]
    for (const [specifier, kind] of specifiers) {
      if (specifier.startsWith('.') || specifier.startsWith('/')) {
        const target = resolve(dirname(file), specifier)
        expect(existsSync(target), `${relative(dist, file)} imports ${specifier}, which is missing`).toBe(true)
        pending.push(target)
      } else {
        const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]
        const kinds = graph.packages.get(name as string) ?? new Set()
        kinds.add(kind)
        graph.packages.set(name as string, kinds)
      }
    }
  }
  return graph
}

beforeAll(async () => {
  await run('npm', ['run', 'build'], { cwd: root, timeout: 120_000 })
}, 120_000)

describe('the built package', () => {
  it('dist/client.js reaches no server code, no ioredis, and only msgpackr, nanoid and a lazy ws', () => {
    const graph = importGraph('client.js')
    expect(graph.files).toContain('client.js')
    expect(graph.files.length).toBeGreaterThan(1)
    expect(graph.files).not.toContain('server.js')
    for (const file of graph.files) {
      const text = readFileSync(join(dist, file), 'utf8')
      for (const word of ['ioredis', 'WebSocketServer', 'MeshServer']) {
        expect(text.includes(word), `${file} mentions ${word}`).toBe(false)
      }
    }
    for (const name of graph.packages.keys()) expect(['msgpackr', 'ws', 'nanoid']).toContain(name)
    expect(graph.packages.get('ws')).toEqual(new Set(['dynamic']))
  })

  it('dist/client.js loads commandSync\'s Node-only chunk through a dynamic import, and that chunk imports no Node built-in', () => {
    const eager = importGraph('client.js', false)
    const syncChunk = importGraph('client.js').files.find((file) => /^sync-caller-.*\.js$/.test(file))
    expect(syncChunk).toBeDefined()
    expect(eager.files).not.toContain(syncChunk)
    // A browser bundler follows dynamic imports too: a `worker_threads` import there would fail its build.
    expect(readFileSync(join(dist, syncChunk!), 'utf8')).toContain('getBuiltinModule("node:worker_threads")')
  })

  it('the import graph walker sees what dist/server.js imports (a check on the check)', () => {
    const graph = importGraph('server.js')
    expect(graph.packages.get('ws')).toEqual(new Set(['static']))
    expect(graph.packages.has('msgpackr')).toBe(true)
    expect(readFileSync(join(dist, 'server.js'), 'utf8')).toContain('MeshServer')
  })

  it('loads every entry point as ESM through the exports map', async () => {
    const script = `
      const entries = {}
      for (const name of ['meshkit', 'meshkit/client', 'meshkit/server']) {
        const module = await import(name)
        entries[name] = {
          resolved: import.meta.resolve(name),
          MeshClient: typeof module.MeshClient,
          MeshServer: typeof module.MeshServer,
          MeshError: typeof module.MeshError,
          code: module.MeshError ? new module.MeshError('X_CODE', 'x').code : null,
        }
      }
      const [client, server] = await Promise.all([import('meshkit/client'), import('meshkit/server')])
      entries.sameMeshError = client.MeshError === server.MeshError
      console.log(JSON.stringify(entries))
    `
    const result = (await node(['--input-type=module', '-e', script])) as Record<string, any>
    expect(result['meshkit/client']).toMatchObject({ MeshClient: 'function', MeshError: 'function', MeshServer: 'undefined' })
    expect(result['meshkit/server']).toMatchObject({ MeshServer: 'function', MeshError: 'function', MeshClient: 'undefined' })
    expect(result.meshkit).toMatchObject({ MeshError: 'function', code: 'X_CODE' })
    expect(result['meshkit/client'].resolved).toMatch(/\/dist\/client\.js$/)
    expect(result['meshkit/server'].resolved).toMatch(/\/dist\/server\.js$/)
    expect(result.meshkit.resolved).toMatch(/\/dist\/index\.js$/)
    expect(result.sameMeshError).toBe(true)
  })

  it('loads every entry point as CJS, and requiring the client loads neither server code, ws nor ioredis', async () => {
    const script = `
      const entries = {}
      const client = require('meshkit/client')
      const loadedByClient = Object.keys(require.cache)
      for (const name of ['meshkit', 'meshkit/client', 'meshkit/server']) {
        const module = require(name)
        entries[name] = {
          resolved: require.resolve(name),
          MeshClient: typeof module.MeshClient,
          MeshServer: typeof module.MeshServer,
          MeshError: typeof module.MeshError,
        }
      }
      entries.loadedByClient = loadedByClient
      entries.sameMeshError = client.MeshError === require('meshkit/server').MeshError
      console.log(JSON.stringify(entries))
    `
    const result = (await node(['-e', script])) as Record<string, any>
    expect(result['meshkit/client']).toMatchObject({ MeshClient: 'function', MeshError: 'function', MeshServer: 'undefined' })
    expect(result['meshkit/server']).toMatchObject({ MeshServer: 'function', MeshError: 'function', MeshClient: 'undefined' })
    expect(result.meshkit).toMatchObject({ MeshError: 'function' })
    expect(result['meshkit/client'].resolved).toMatch(/\/dist\/client\.cjs$/)
    expect(result['meshkit/server'].resolved).toMatch(/\/dist\/server\.cjs$/)
    const loaded = result.loadedByClient as string[]
    expect(loaded.some((file) => file.endsWith('/dist/client.cjs'))).toBe(true)
    expect(loaded.filter((file) => /\/dist\/server\.cjs$|\/node_modules\/(ioredis|ws)\//.test(file))).toEqual([])
    expect(result.sameMeshError).toBe(true)
  })

  it('has type declarations for the three entries, and every file the exports map names exists', () => {
    for (const entry of ['index', 'client', 'server']) {
      for (const extension of ['.d.ts', '.d.cts']) {
        const file = join(dist, entry + extension)
        expect(existsSync(file), `${entry}${extension}`).toBe(true)
        expect(readFileSync(file, 'utf8')).toMatch(/\bexport\b/)
      }
    }
    expect(readFileSync(join(dist, 'client.d.ts'), 'utf8')).toMatch(/\bMeshClient\b/)
    expect(readFileSync(join(dist, 'server.d.ts'), 'utf8')).toMatch(/\bMeshServer\b/)

    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: unknown; main: string; module: string; types: string }
    const targets: string[] = [pkg.main, pkg.module, pkg.types]
    const collect = (value: unknown): void => {
      if (typeof value === 'string') targets.push(value)
      else if (value && typeof value === 'object') Object.values(value).forEach(collect)
    }
    collect(pkg.exports)
    expect(targets.length).toBeGreaterThan(12)
    for (const target of targets) expect(existsSync(join(root, target)), target).toBe(true)
  })
})

/** Uses all three entries with types that are wrong if any of them resolved to `any`. */
const consumerSource = `
import { MeshServer, type Connection, type MeshServerOptions, type Middleware } from 'meshkit/server'
import { MeshClient } from 'meshkit/client'
import { ErrorCode, MeshError, PROTOCOL_VERSION } from 'meshkit'

const options: MeshServerOptions = { port: 0 }
const server = new MeshServer(options)
server.registerCommand<{ n: number }, number>('double', (ctx) => ctx.payload.n * 2)
interface Api { commands: { echo: { payload: string; result: string } }; events: { hi: { n: number } } }
const typedServer = new MeshServer<Api>({ port: 0 })
const auth: Middleware<{ user: string }> = (ctx) => {
  ctx.user = 'u'
}
typedServer.addMiddleware(auth).registerCommand('echo', (ctx) => ctx.payload + ctx.user)
// @ts-expect-error the typed signatures reach the published types: an unknown event fails
void typedServer.broadcast('hello', { n: 1 })
server.onConnection((connection: Connection) => {
  const id: string = connection.id
  return void id
})
const client = new MeshClient('ws://127.0.0.1:1')
// The typed client's signatures in the published declarations: both directives go unused if they were lost.
const typedClient = new MeshClient<{ commands: { echo: { payload: string; result: string } } }>('ws://127.0.0.1:1')
// @ts-expect-error echo takes a string
void typedClient.command('echo', 1)
// @ts-expect-error echo resolves with a string
const echoed: Promise<number> = typedClient.command('echo', 'hi')
const version: number = PROTOCOL_VERSION
const error = new MeshError(ErrorCode.BAD_REQUEST, 'x')
// @ts-expect-error a port is a number: fails as "unused directive" if the options were typed any
new MeshServer({ port: 'eighty' })
export { client, echoed, version, error }
`

const strict = { strict: true, skipLibCheck: false, noEmit: true, target: 'ES2022', noUncheckedIndexedAccess: true }
const consumers = {
  nodenext: { compilerOptions: { ...strict, module: 'NodeNext', moduleResolution: 'NodeNext' } },
  bundler: { compilerOptions: { ...strict, module: 'ESNext', moduleResolution: 'Bundler' } },
}

describe('the packed tarball in a strict TypeScript project', () => {
  let packed: PackedPackage
  let workspace: string

  beforeAll(async () => {
    workspace = mkdtempSync(join(tmpdir(), 'meshkit-consumer-'))
    packed = await packInto(root, workspace)
    // One node_modules at the top, shared by the consumers below it, as a monorepo would have.
    await installPacked(packed, root, workspace)
    for (const [name, tsconfig] of Object.entries(consumers)) {
      const dir = join(workspace, name)
      mkdirSync(dir)
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type: 'module' }))
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: ['index.ts', ...(name === 'nodenext' ? ['legacy.cts'] : [])] }))
      writeFileSync(join(dir, 'index.ts'), consumerSource)
    }
    // The require condition's declarations (.d.cts), as a CommonJS file of a nodenext project sees them.
    writeFileSync(
      join(workspace, 'nodenext', 'legacy.cts'),
      "import server = require('meshkit/server')\nimport client = require('meshkit/client')\nexport const made: server.MeshServer = new server.MeshServer({ port: 0 })\nexport const c: client.MeshClient = new client.MeshClient('ws://127.0.0.1:1')\n",
    )
    for (const name of Object.keys(consumers)) void typecheck(name)
  }, 120_000)

  // Both consumers are checked at once (tsc is single-threaded); each test awaits its own.
  const checks = new Map<string, Promise<string>>()
  const typecheck = (name: string): Promise<string> => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    if (!checks.has(name)) {
      checks.set(name, run(process.execPath, [tsc, '-p', join(workspace, name)], { cwd: join(workspace, name), timeout: 150_000 }).then(
        () => '',
        (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}` || String(error),
      ))
    }
    return checks.get(name) as Promise<string>
  }

  afterAll(() => {
    if (workspace) rmSync(workspace, { recursive: true, force: true })
  })

  it('contains LICENSE (MIT, meshkit contributors) next to README.md and dist', () => {
    expect(packed.files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/server.d.ts']))
    const license = readFileSync(join(workspace, 'node_modules', 'meshkit', 'LICENSE'), 'utf8')
    expect(license).toMatch(/^MIT License/)
    expect(license).toContain('Copyright (c) 2026 meshkit contributors')
  })

  it('runs without prom-client (an optional peer): a server starts, and metrics: true throws a TypeError at construction', async () => {
    const manifest = JSON.parse(readFileSync(join(workspace, 'node_modules', 'meshkit', 'package.json'), 'utf8')) as { peerDependenciesMeta?: Record<string, { optional?: boolean }> }
    expect(manifest.peerDependenciesMeta?.['prom-client']?.optional).toBe(true)
    expect(existsSync(join(workspace, 'node_modules', 'prom-client'))).toBe(false)
    const script = join(workspace, 'nodenext', 'no-prom-client.mjs')
    writeFileSync(script, [
      "import { MeshServer } from 'meshkit/server'",
      "const plain = new MeshServer({ host: '127.0.0.1', port: 0 })",
      'await plain.ready()',
      'await plain.close()',
      'let outcome = { thrown: false }',
      "try { new MeshServer({ host: '127.0.0.1', port: 0, metrics: true }) } catch (error) { outcome = { name: error.name, cause: error.cause?.code } }",
      'console.log(JSON.stringify(outcome))',
    ].join('\n'))
    const { stdout } = await run(process.execPath, [script], { cwd: join(workspace, 'nodenext'), timeout: 30_000 })
    expect(JSON.parse(stdout.trim())).toEqual({ name: 'TypeError', cause: 'MODULE_NOT_FOUND' })
  }, 60_000)

  it.each(Object.keys(consumers))('type-checks with moduleResolution %s, strict and without skipLibCheck', async (name) => {
    // The first errors name the cause; a missing @types package yields thousands of follow-ups.
    expect((await typecheck(name)).split('\n').slice(0, 12).join('\n')).toBe('')
  }, 150_000)
})
