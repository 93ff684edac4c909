import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/** What the test set-up knows about the machine when it looks for Chromium. */
export interface ChromiumSearch {
  /** `CHROMIUM_PATH`, when set: the only place looked at, so a wrong value fails loudly. */
  readonly explicitPath?: string
  /** The binary's name on PATH and under /usr/bin. @default 'chromium' */
  readonly name?: string
  readonly path?: string
  readonly isRoot?: boolean
}

/** Where Chromium is, or how to get it: the finder's whole decision, kept pure for its test. */
export type ChromiumDecision =
  | { readonly action: 'use'; readonly path: string }
  | { readonly action: 'install'; readonly name: string }
  | { readonly action: 'stop'; readonly instruction: string }

function findOnPath(binary: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, binary)
    if (dir && existsSync(candidate)) return candidate
  }
  return undefined
}

/**
 * Decides how the browser tests get Chromium: `CHROMIUM_PATH`, else /usr/bin/chromium,
 * else on PATH; when missing, Debian's `chromium` package if running as root with
 * apt-get (as for redis-server), otherwise a one-line instruction.
 */
export function decideChromium(search: ChromiumSearch = {}): ChromiumDecision {
  const name = search.name ?? 'chromium'
  const path = search.path ?? process.env.PATH ?? ''
  if (search.explicitPath !== undefined) {
    if (existsSync(search.explicitPath)) return { action: 'use', path: search.explicitPath }
    return { action: 'stop', instruction: `CHROMIUM_PATH=${search.explicitPath} does not exist: point it at a Chromium binary or unset it` }
  }
  const found = [join('/usr/bin', name)].find((candidate) => existsSync(candidate)) ?? findOnPath(name, path)
  if (found) return { action: 'use', path: found }
  const isRoot = search.isRoot ?? process.getuid?.() === 0
  if (isRoot && findOnPath('apt-get', path) !== undefined) return { action: 'install', name }
  return { action: 'stop', instruction: `${name} not found: install it (sudo apt-get install chromium) or set CHROMIUM_PATH to a Chromium binary` }
}

/** The path of a Chromium binary, installing Debian's package when the decision says so; throws the instruction otherwise. */
export function ensureChromium(search: ChromiumSearch = { explicitPath: process.env.CHROMIUM_PATH || undefined }): string {
  const decision = decideChromium(search)
  if (decision.action === 'use') return decision.path
  if (decision.action === 'stop') throw new Error(decision.instruction)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', decision.name], { stdio: 'inherit', env })
  const after = decideChromium({ ...search, isRoot: false })
  if (after.action !== 'use') throw new Error(`${decision.name} is still missing after apt-get install ${decision.name}`)
  return after.path
}
