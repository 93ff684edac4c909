import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { sharedRedisEnv } from './shared-redis.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Runs the dispatcher fixture in its own process; resolves with its exit code once it exits by itself. */
export function dispatchFromProcess(
  namespace: string,
  dispatches: Array<[string, unknown, string[], string[]?]>,
  sync = false,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/dispatch.ts'], {
    cwd: root,
    env: { ...process.env, ...sharedRedisEnv(), NAMESPACE: namespace, SYNC: sync ? '1' : '0', DISPATCHES: JSON.stringify(dispatches) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })))
}
