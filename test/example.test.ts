import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { MeshClient } from 'meshkit/client'
import { startExampleServer } from '../examples/app.js'
import type { ChatMessage, ExampleApi } from '../examples/api.js'
import { uniqueNamespace } from './support/cluster.js'
import { nextEvent } from './support/harness.js'

const root = fileURLToPath(new URL('..', import.meta.url))

// `node --import tsx`, not the tsx binary: tsx runs the script in a child of its own and
// relays signals to it, and under load its own exit code (143) hid the script's.
function run(script: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  onTestFinished(() => {
    child.kill('SIGTERM')
  })
  return child
}

function collect(child: ChildProcess): () => string {
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  return () => output
}

describe('examples (what `npm start` runs)', () => {
  it('the example server answers the example client on the in-memory default', { timeout: 60_000 }, async () => {
    const server = run('examples/server.ts', { PORT: '0' })
    const serverOutput = collect(server)
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout?.on('data', () => {
        const match = /ws:\/\/localhost:(\d+)/.exec(serverOutput())
        if (match) resolve(match[1]!)
      })
      server.once('exit', (code) => reject(new Error(`example server exited with ${code}: ${serverOutput()}`)))
    })

    // The demo's HTTP server mounts meshkit's routes beside its files.
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200)
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).toMatch(/^meshkit_connections 0$/m)
    expect((await fetch(`http://127.0.0.1:${port}/`)).headers.get('content-type')).toMatch(/^text\/html/)

    const client = run('examples/client.ts', { MESH_URL: `ws://127.0.0.1:${port}` })
    const clientOutput = collect(client)
    const [code] = await once(client, 'exit')
    expect(clientOutput()).toContain('echo → Hello, world!')
    expect(clientOutput()).toContain('whoami without a token → UNAUTHORIZED')
    expect(clientOutput()).toContain('unknown command → NOT_FOUND')
    expect(clientOutput()).toContain('shout with a number → BAD_REQUEST')
    expect(clientOutput()).toMatch(/join → \[ '[\w-]+\.[\w-]+' \]/)
    expect(clientOutput()).toContain('chat:general ← hello channel')
    expect(clientOutput()).toContain('message → noted: hello server')
    expect(code).toBe(0)

    server.kill('SIGTERM')
    const [serverCode] = await once(server, 'exit')
    expect(serverCode).toBe(0)
  })

  it('the portal example handles a client message and a command in the portal, and exits cleanly', { timeout: 60_000 }, async () => {
    const example = run('examples/portal.ts', { REDIS_URL: inject('redisUrl'), NAMESPACE: uniqueNamespace('example-portal') })
    const output = collect(example)
    const [code] = await once(example, 'exit')
    expect(output()).toMatch(/portal: [\w-]+\.[\w-]+ connected \(query \{"from":"example"\}\)/)
    expect(output()).toContain('chat → chat-reply: HELLO, PORTAL')
    expect(output()).toContain('add → 5')
    expect(output()).toContain('add with a string → BAD_REQUEST')
    expect(output()).toMatch(/portal: [\w-]+\.[\w-]+ disconnected \(1000\)/)
    // Exiting by itself shows that close() released everything (timers, Redis connections).
    expect(code).toBe(0)
  })

  it('two example servers on one Redis are one chat: messages and presence cross between them', { timeout: 30_000 }, async () => {
    const shared = { port: 0, redis: inject('redisUrl'), namespace: uniqueNamespace('example-chat'), clientDir: '/nonexistent' }
    const servers = [await startExampleServer(shared), await startExampleServer(shared)]
    onTestFinished(() => Promise.all(servers.map((server) => server.close())).then(() => undefined))
    const [ada, grace] = servers.map((server) => new MeshClient<ExampleApi>(`ws://127.0.0.1:${server.port}`)) as [MeshClient<ExampleApi>, MeshClient<ExampleApi>]
    onTestFinished(() => Promise.all([ada.close(), grace.close()]).then(() => undefined))
    await Promise.all([ada.connect(), grace.connect()])

    let hear!: (message: ChatMessage) => void
    const heard = new Promise<ChatMessage>((resolve) => (hear = resolve))
    expect((await grace.subscribe('chat:general', (message) => hear(message))).success).toBe(true)
    await grace.joinRoom('room:general', { presence: { name: 'Grace' } })
    const joined = nextEvent<{ type: string; state: { name: string } }>(grace, 'presence', 5_000, (event) => event.type === 'join' && event.state.name === 'Ada')
    await ada.joinRoom('room:general', { presence: { name: 'Ada' } })
    await joined
    expect((await ada.presence('room:general')).map((member) => (member.state as { name: string }).name).sort()).toEqual(['Ada', 'Grace'])

    await ada.command('say', { room: 'general', name: 'Ada', text: 'across instances' })
    expect(await heard).toMatchObject({ from: ada.id, name: 'Ada', text: 'across instances' })
  })
})
