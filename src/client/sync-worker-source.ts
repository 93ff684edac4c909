/**
 * The worker thread of `commandSync`, as source text: run with `eval`, it needs no
 * file of its own next to the bundle (tsup's chunks, a test runner's sources), and it
 * loads `ws` from the path the main thread resolved. It is a dumb pipe: it opens the
 * side channel it is told to, sends the frames it is given, and posts every frame it
 * receives, and the end of its socket, to the main thread's port, then bumps the
 * shared counter the main thread waits on. The main thread decodes and matches
 * replies; the worker never needs the codec.
 *
 * Messages from the main thread:
 * - `{ open, url, protocol, attach }`: replace the socket with a new one (generation
 *   `open`), send the attach request once it is open, and hold frames until the
 *   server's first frame (its answer to the attach) arrives.
 * - `{ send, frame }`: write a request frame on the socket of generation `send`; if
 *   that socket is gone, say so again.
 *
 * Posted to the port: `{ generation, data }` for a frame, `{ generation, closed, reason,
 * opened }` when the socket ended (its close code, 1006 for a failure; whether it had opened).
 */
export const SYNC_WORKER_SOURCE = `
'use strict'
const { workerData, parentPort } = require('node:worker_threads')
const { port, control, wsPath } = workerData
const signal = new Int32Array(control)
let WebSocket
try {
  const ws = require(wsPath)
  WebSocket = ws.WebSocket || ws
} catch (error) {
  WebSocket = undefined
}
let current

function post(message) {
  port.postMessage(message)
  Atomics.add(signal, 0, 1)
  Atomics.notify(signal, 0)
}

function open(generation, url, protocol, attach) {
  if (current && current.socket) {
    current.gone = true
    try { current.socket.terminate() } catch {}
  }
  const state = { generation, socket: undefined, opened: false, attached: false, queue: [], gone: false, ended: false }
  current = state
  const end = (code, reason) => {
    if (state.ended) return
    state.ended = true
    state.code = code
    state.reason = reason
    post({ generation, closed: code, reason, opened: state.opened })
  }
  if (!WebSocket) return end(1006, 'ws could not be loaded in the worker')
  let socket
  try {
    socket = new WebSocket(url, [protocol], { perMessageDeflate: false })
  } catch (error) {
    return end(1006, String(error && error.message))
  }
  state.socket = socket
  socket.binaryType = 'nodebuffer'
  socket.on('open', () => {
    state.opened = true
    socket.send(attach)
  })
  socket.on('message', (data, isBinary) => {
    if (state.gone) return
    if (!state.attached) {
      // The server's first frame answers the attach; a refusal closes the socket instead.
      state.attached = true
      for (const frame of state.queue) socket.send(frame)
      state.queue = []
      return
    }
    post({ generation, data: isBinary ? new Uint8Array(data) : data.toString() })
  })
  socket.on('error', () => {})
  socket.on('close', (code, reason) => end(code, reason.toString()))
}

parentPort.on('message', (message) => {
  if (message.open !== undefined) return open(message.open, message.url, message.protocol, message.attach)
  const state = current
  if (!state || state.generation !== message.send || state.ended) {
    const ended = state && state.generation === message.send && state.ended
    return post({ generation: message.send, closed: ended ? state.code : 1006, reason: 'side channel gone', opened: ended ? state.opened : false })
  }
  if (state.attached) state.socket.send(message.frame)
  else state.queue.push(message.frame)
})
`
