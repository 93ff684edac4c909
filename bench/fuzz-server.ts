// The server bench/fuzz.ts attacks, in its own process so that a crash shows as an
// exit. Unhandled rejections are counted (and would otherwise end the process, which
// the driver also sees); `fuzz/stats` reports them with memory after a full GC.
import { MeshServer } from 'meshkit/server'
import { configureFuzzServer } from '../test/support/fuzz-run.js'

let unhandledRejections = 0
process.on('unhandledRejection', (error) => {
  unhandledRejections++
  process.stderr.write(`unhandled rejection in the fuzz server: ${String(error)}\n`)
})

const server = new MeshServer({ host: '127.0.0.1', port: 0 })
configureFuzzServer(server)
server.registerCommand('fuzz/stats', () => {
  ;(globalThis as { gc?: () => void }).gc?.()
  const memory = process.memoryUsage()
  return { rss: memory.rss, heapUsed: memory.heapUsed, connections: server.connections.size, unhandledRejections }
})
await server.ready()
process.stdout.write(`PORT ${server.port}\n`)
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0))
})
