import { createServer, connect, type Socket } from 'node:net'
import { onTestFinished } from 'vitest'

/** A TCP relay in front of Redis that counts the bytes Redis sends through it. */
export interface CountingProxy {
  /** A Redis URL that reaches Redis through this relay. */
  readonly url: string
  /** Bytes Redis has sent to everyone connected through this relay so far. */
  readonly received: number
  /** Cuts every connection through the relay and refuses new ones until `restore()`: Redis keeps its data, the instance loses Redis. */
  cut(): void
  restore(): void
}

/**
 * Starts a relay to the Redis at `target`, closed when the test ends. Give one
 * instance this relay's URL and `received` tells how much Redis sent it (replies
 * and pub/sub messages on all its connections): what the instance received,
 * whatever its topics are called.
 */
export async function countingProxy(target: string): Promise<CountingProxy> {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  let received = 0
  let refusing = false
  const relay = createServer((inbound) => {
    if (refusing) {
      inbound.destroy()
      return
    }
    const outbound = connect(Number(port), hostname)
    sockets.add(inbound).add(outbound)
    outbound.on('data', (chunk: Buffer) => {
      received += chunk.length
    })
    inbound.pipe(outbound)
    outbound.pipe(inbound)
    // Either side going away ends the pair, as a cut connection would.
    const end = (): void => {
      inbound.destroy()
      outbound.destroy()
      sockets.delete(inbound)
      sockets.delete(outbound)
    }
    inbound.on('error', end).on('close', end)
    outbound.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        relay.close(() => resolve())
      }),
  )
  const address = relay.address()
  const relayPort = typeof address === 'object' && address ? address.port : 0
  return {
    url: `redis://127.0.0.1:${relayPort}`,
    get received() {
      return received
    },
    cut() {
      refusing = true
      for (const socket of sockets) socket.destroy()
    },
    restore() {
      refusing = false
    },
  }
}
