// The control channel every bench server offers the orchestrator, outside the target's
// own protocol: one JSON request a line on stdin, `REPLY {...}` lines on stdout.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { getHeapSpaceStatistics } from 'node:v8'

const gc = (globalThis as { gc?: () => void }).gc

/** A server's own control command: gets what followed its name on the line (`await-events 20000`). */
export type ControlCommand = (argument: string) => unknown

/**
 * Serves the control commands (the common ones and the server's `extra` ones, which may
 * be async), then prints the port the orchestrator waits for.
 */
export function serveControl(port: number, connections: () => number, extra: Record<string, ControlCommand> = {}): void {
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  const commands: Record<string, () => unknown> = {
    connections: () => ({ connections: connections() }),
    /** CPU time used so far, in milliseconds (user + system). */
    cpu: () => {
      const { user, system } = process.cpuUsage()
      return { cpuMs: (user + system) / 1000 }
    },
    /**
     * Memory after a full collection (the server runs with --expose-gc), and the size V8
     * gave its young generation (`youngBytes`: new space and new large-object space), which
     * a burst of surviving allocations grows and which RSS includes.
     */
    memory: () => {
      if (!gc) throw new Error('start the server with --expose-gc')
      gc()
      gc()
      const young = getHeapSpaceStatistics()
        .filter((space) => space.space_name === 'new_space' || space.space_name === 'new_large_object_space')
        .reduce((sum, space) => sum + space.space_size, 0)
      return { ...process.memoryUsage(), youngBytes: young, connections: connections() }
    },
    'loop-start': () => {
      loopDelay.reset()
      loopDelay.enable()
      return {}
    },
    'loop-stop': () => {
      loopDelay.disable()
      return {
        connections: connections(),
        rss: process.memoryUsage().rss,
        loopP50: loopDelay.percentile(50) / 1e6,
        loopP99: loopDelay.percentile(99) / 1e6,
        loopMax: loopDelay.max / 1e6,
      }
    },
  }
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      const { id, command } = JSON.parse(line) as { id: number; command: string }
      const [name = '', ...rest] = command.split(' ')
      const handler = commands[name] ?? extra[name]
      const reply = (result: unknown): void => void process.stdout.write(`REPLY ${JSON.stringify({ id, result })}\n`)
      if (!handler) return reply({ error: `unknown control command ${name}` })
      void Promise.resolve(handler(rest.join(' '))).then(reply, (error: Error) => reply({ error: error.message }))
    })
    // The orchestrator is gone (or done): nothing is left to serve.
    .on('close', () => process.exit(0))
  // A normal exit, so that --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0))
  console.log(`PORT ${port}`)
}
