import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'

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

/** Follows the imports of an ESM file of dist/ through the relative files it reaches. */
function importGraph(entry: string): ImportGraph {
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
      ...[...text.matchAll(dynamicImport)].map((match) => [match[1], 'dynamic'] as [string, 'dynamic']),
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
