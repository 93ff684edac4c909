import { pino, type Logger as PinoLogger } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { MeshServer, type Logger } from 'meshkit/server'
import { connectClient, startServer, waitFor } from './support/harness.js'

/** A pino logger writing JSON lines into an array (pino writes synchronously to a plain stream object). */
function pinoLines(): { logger: PinoLogger; lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
  return { logger, lines }
}

describe('the logger option', () => {
  it('works unchanged with pino: the message and the details (an error with its code) reach its output', async () => {
    const first = await startServer()
    const { logger, lines } = pinoLines()
    const second = new MeshServer({ host: '127.0.0.1', port: first.port, logger })
    onTestFinished(() => second.close())
    await waitFor(() => lines.some((line) => line.msg === 'meshkit server failed to start'))
    const line = lines.find((entry) => entry.msg === 'meshkit server failed to start')!
    expect(line.level).toBe(50) // pino's error
    expect(line.err.code).toBe('EADDRINUSE')
    expect(typeof line.err.stack).toBe('string')
  })

  it('pino gets the error of a failing listener next to the message', async () => {
    const { logger, lines } = pinoLines()
    const server = await startServer({ logger })
    server.onConnection(() => {
      throw new Error('listener bug')
    })
    await connectClient(server)
    await waitFor(() => lines.some((line) => typeof line.msg === 'string' && line.err?.message === 'listener bug'))
  })

  it('console-style loggers still get (message, details)', async () => {
    const calls: unknown[][] = []
    const logger: Logger = { error: (...args: unknown[]) => void calls.push(args) }
    const first = await startServer()
    const second = new MeshServer({ host: '127.0.0.1', port: first.port, logger })
    onTestFinished(() => second.close())
    await waitFor(() => calls.some(([message]) => message === 'meshkit server failed to start'))
    const [, details] = calls.find(([message]) => message === 'meshkit server failed to start')!
    expect(((details as { error: NodeJS.ErrnoException }).error).code).toBe('EADDRINUSE')
  })
})
