import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { onTestFinished } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Starts an instance in a child process (`fixture`: another script printing "PORT <port>") and resolves with its port. */
export async function childInstance(env: Record<string, string>, fixture = 'test/fixtures/instance.ts'): Promise<{ port: number; kill(): Promise<void> }> {
  // node itself runs the instance (tsx as a loader), so SIGKILL reaches the process that holds the sockets.
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  onTestFinished(async () => {
    child.kill('SIGKILL')
    await exited
  })
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /PORT (\d+)/.exec(output)
      if (match) resolve(Number(match[1]))
    })
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.once('exit', (code) => reject(new Error(`instance exited with ${code}: ${output}`)))
  })
  return {
    port,
    async kill() {
      child.kill('SIGKILL')
      await exited
    },
  }
}
