import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { get } from 'node:http'
import { connect, type Socket } from 'node:net'
import { onTestFinished } from 'vitest'

/** Rejects after `ms` unless the promise settles first, naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** A plain HTTP GET over loopback without keep-alive: status and body. */
export function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent: false }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body += chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
      response.on('error', reject)
    })
    request.on('error', reject)
  })
}

/**
 * A TCP socket that performs the WebSocket upgrade by hand and then stops reading
 * (`pause()`): a peer whose receive buffers fill up and stay full. Destroyed when
 * the test ends. Resolves with the socket and the status line of the response.
 */
export async function openNonReadingWebSocket(port: number, path = '/'): Promise<{ socket: Socket; statusLine: string }> {
  const socket = connect(port, '127.0.0.1')
  onTestFinished(() => {
    socket.destroy()
  })
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(
    `GET ${path} HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${port}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n',
  )
  const head = await new Promise<string>((resolve, reject) => {
    let received = ''
    const onData = (chunk: Buffer): void => {
      received += chunk.toString('latin1')
      if (!received.includes('\r\n\r\n')) return
      // Pause before dropping the listener, so that nothing more is read from now on.
      socket.pause()
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve(received)
    }
    const onClose = (): void => reject(new Error('socket closed before the upgrade response'))
    socket.on('data', onData)
    socket.once('close', onClose)
  })
  return { socket, statusLine: head.slice(0, head.indexOf('\r\n')) }
}

/** Deterministic pseudo-random bytes (mulberry32), so that a failing case can be replayed. */
export function pseudoRandomBytes(seed: number, length: number): Buffer {
  const bytes = Buffer.alloc(length)
  let state = seed >>> 0
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    bytes[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff
  }
  return bytes
}
