import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

/** A `redis-server` process this test run started, and how to stop it. */
export interface RedisProcess {
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  stop(): Promise<void>
}

function findOnPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, binary)
    if (dir && existsSync(candidate)) return candidate
  }
  return ['/usr/bin', '/usr/sbin', '/usr/local/bin'].map((dir) => join(dir, binary)).find((path) => existsSync(path))
}

/** Finds `redis-server`, installing Debian's package when running as root with apt-get. */
export function ensureRedisServer(): string {
  const found = findOnPath('redis-server')
  if (found) return found
  const canInstall = process.getuid?.() === 0 && findOnPath('apt-get') !== undefined
  if (!canInstall) {
    throw new Error('redis-server not found: install it (sudo apt-get install redis-server) or set REDIS_URL')
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'redis-server'], { stdio: 'inherit', env })
  const installed = findOnPath('redis-server')
  if (!installed) throw new Error('redis-server is still missing after apt-get install redis-server')
  return installed
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      const port = typeof address === 'object' && address ? address.port : 0
      probe.close(() => resolve(port))
    })
  })
}

/**
 * Starts a throw-away `redis-server` on a loopback port (a given one, to restart "the
 * same" Redis); `extraArgs` go to its command line (`['--requirepass', 'secret']`).
 */
export async function startRedisServer(port?: number, extraArgs: readonly string[] = []): Promise<RedisProcess> {
  const binary = ensureRedisServer()
  const chosen = port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-redis-'))
  const child = spawn(
    binary,
    ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  await waitUntilReady(child, chosen)
  let stopped: Promise<void> | undefined
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    child,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }).then(() => rmSync(dir, { recursive: true, force: true }))
      return stopped
    },
  }
}

export function waitUntilReady(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = ''
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      // The log line that says the server accepts connections (all supported versions print it).
      if (/ready to accept connections/i.test(output)) {
        child.stdout?.off('data', onData)
        child.stderr?.removeAllListeners('data')
        // Keep draining the log so a full pipe never blocks the server.
        child.stdout?.resume()
        child.stderr?.resume()
        resolve()
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.once('exit', (code) => reject(new Error(`redis-server on port ${port} exited with ${code}: ${output.trim()}`)))
    child.once('error', reject)
  })
}
