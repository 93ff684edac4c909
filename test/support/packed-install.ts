import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

interface Manifest {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
}

/** What `npm pack` reports about the tarball it wrote. */
export interface PackedPackage {
  tarball: string
  /** Paths inside the package, e.g. `LICENSE`, `dist/server.d.ts`. */
  files: string[]
}

/** Packs the repository into `destination` with npm's own `files` rules, as `npm publish` would. */
export async function packInto(root: string, destination: string): Promise<PackedPackage> {
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', destination], { cwd: root, timeout: 60_000 })
  const [report] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  if (!report) throw new Error('npm pack reported nothing')
  return { tarball: join(destination, report.filename), files: report.files.map((file) => file.path) }
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest
}

/** Where Node would find `name` when required from `from`: the nearest `node_modules` up the tree. */
function locate(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate)
    if (dirname(dir) === dir) return undefined
  }
}

/**
 * Installs a packed tarball into `<project>/node_modules` without a registry: the
 * tarball is extracted, and only what its manifest declares in `dependencies` (and,
 * transitively, theirs) is copied from the repository's `node_modules`. So a type
 * package kept in meshkit's devDependencies is missing here exactly as it would be
 * for a user, while nothing leaves the machine. Copies, not symlinks: a symlink
 * would resolve back into the repository, where every devDependency is reachable.
 */
export async function installPacked(packed: PackedPackage, root: string, project: string): Promise<string[]> {
  const modules = join(project, 'node_modules')
  const target = join(modules, 'meshkit')
  mkdirSync(target, { recursive: true })
  await run('tar', ['-xzf', packed.tarball, '-C', target, '--strip-components=1'], { timeout: 30_000 })
  const installed: string[] = []
  const pending: Array<[string, string, boolean]> = Object.entries(readManifest(target).dependencies ?? {}).map(([name]) => [name, root, false])
  while (pending.length > 0) {
    const [name, from, optional] = pending.shift() as [string, string, boolean]
    if (installed.includes(name)) continue
    const source = locate(name, from)
    if (!source) {
      if (optional) continue
      throw new Error(`${name} (needed from ${from}) is not in the repository's node_modules`)
    }
    cpSync(source, join(modules, name), { recursive: true, dereference: true })
    installed.push(name)
    const manifest = readManifest(source)
    for (const dependency of Object.keys(manifest.dependencies ?? {})) pending.push([dependency, source, false])
    for (const dependency of Object.keys(manifest.optionalDependencies ?? {})) pending.push([dependency, source, true])
  }
  return installed
}
