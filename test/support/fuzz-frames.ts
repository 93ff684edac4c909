import { pseudoRandomBytes } from './wire.js'
import { codecByName } from '../../src/shared/codec.js'
import { BuiltinCommand, FrameType, type CodecName } from '../../src/shared/protocol.js'

/** One WebSocket message a hostile client sends, and how (binary or text). */
export interface FuzzMessage {
  data: Buffer | string
  binary: boolean
  /** Which family of junk it belongs to, for reports. */
  kind: string
}

/** A hostile session: which subprotocol it asks for, and what it sends, in order. */
export interface FuzzSession {
  codec: CodecName
  messages: FuzzMessage[]
}

/** The commands a fuzz server registers, so that junk also reaches real handlers. */
export const FuzzCommand = { ECHO: 'echo', SLOW: 'slow', THROWS: 'throws' } as const

/** The message types a fuzz server handles: recorded, throwing, rejecting (and `'*'` sees every one). */
export const FuzzMessageType = { RECORD: 'record', THROWS: 'throws', REJECTS: 'rejects' } as const

const prototypeNames = ['__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'prototype', '__defineGetter__', 'isPrototypeOf']
const oddIds: unknown[] = [0, -1, 1.5, 2 ** 32, 2 ** 32 - 1, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Number.POSITIVE_INFINITY, '1', null, true, [1], { id: 1 }]
const messageTypes: unknown[] = [...Object.values(FuzzMessageType), '*', '', 'missing', 'x'.repeat(256), 'é'.repeat(100), 42, null, {}, ['record'], true]
const commands = [...Object.values(FuzzCommand), ...Object.values(BuiltinCommand), ...prototypeNames, '', 'missing', 'mesh/', 'x'.repeat(5000)]

/** A seeded generator (mulberry32): the same seed always gives the same session. */
class Random {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(below: number): number {
    return Math.floor(this.next() * below)
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T
  }
}

function nested(depth: number, leaf: unknown): unknown {
  let value = leaf
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value }
  return value
}

/** A payload of a random shape: prototype keys, deep nesting, big strings, odd numbers. */
function payload(random: Random): unknown {
  switch (random.int(9)) {
    case 0:
      return undefined
    case 1:
      return Object.fromEntries(prototypeNames.map((name) => [name, random.pick([1, 'x', null, { polluted: true }, [], {}])]))
    case 2:
      return JSON.parse(`{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}`) as unknown
    case 3:
      return nested(random.pick([50, 500, 5000]), 'deep')
    case 4:
      return 'x'.repeat(random.pick([1000, 100_000, 900_000]))
    case 5:
      return { channel: random.pick([...prototypeNames, '', 42, null, { toString: 1 }, ['a'], 'ok']), room: random.pick([...prototypeNames, {}, 7, 'ok']), historyLimit: random.pick([-1, 1e9, 0.5, Number.NaN, '5']), since: random.pick([-5, 2 ** 60, 'a', 1.5]), ids: random.pick([null, [null, '__proto__'], 'x', Array.from({ length: 1000 }, (_, i) => String(i))]), ms: random.int(30) }
    case 6:
      return random.pick([Number.NaN, -0, 2 ** 64, true, null, [], new Uint8Array(16)])
    case 7:
      return Array.from({ length: random.pick([10, 10_000]) }, (_, i) => i)
    default:
      return { nested: { toString: 'not a function', valueOf: 'nor this' } }
  }
}

/** A frame of the protocol's shape, with one or more parts wrong. */
function frame(random: Random): unknown {
  const id = random.next() < 0.7 ? 1 + random.int(50) : random.pick(oddIds)
  switch (random.int(10)) {
    case 8:
      return [FrameType.MESSAGE, random.pick(messageTypes), payload(random)]
    case 9:
      return [FrameType.MESSAGE, ...Array.from({ length: random.int(5) }, () => random.pick([...messageTypes, payload(random)]))]
    case 0:
      return [FrameType.REQUEST, id, random.pick(commands), payload(random)]
    case 1:
      return [FrameType.REQUEST, id, random.pick(commands)]
    case 2:
      return [FrameType.PONG, random.pick([...oddIds, 1, 99])]
    case 3:
      return [random.int(12) - 1, id, random.pick(commands), payload(random), 'extra']
    case 4:
      return random.pick([null, 1, 'string', {}, { 0: 1, 1: 1, length: 2 }, [], [FrameType.REQUEST], new Uint8Array(8)])
    case 5:
      return [FrameType.REQUEST, random.pick(commands), id, payload(random)]
    case 6:
      return nested(random.pick([100, 3000, 20_000]), [FrameType.REQUEST, 1, 'echo'])
    default:
      return [FrameType.REQUEST, id, FuzzCommand.SLOW, { ms: random.int(20) }]
  }
}

function encoded(codec: CodecName, value: unknown): Buffer | string {
  try {
    const data = codecByName(codec).encode(value)
    return typeof data === 'string' ? data : Buffer.from(data)
  } catch {
    // Too deep or not representable for this codec: send it the other way.
    return codec === 'json' ? '[1,1,"echo"' : Buffer.from([0x93, 0x01, 0x01])
  }
}

/** One message: random bytes, garbage text, truncated or wrong-shaped frames. */
function message(random: Random, codec: CodecName, seed: number): FuzzMessage {
  const binary = codec === 'msgpack'
  // Rare, since the server closes the socket on the first: more than maxPayload (1 MiB), and a text frame that is not UTF-8.
  if (random.next() < 0.02) {
    const big = 'x'.repeat(1_100_000)
    return { kind: 'oversized frame', binary, data: encoded(codec, random.next() < 0.5 ? [FrameType.REQUEST, 1, FuzzCommand.ECHO, big] : [FrameType.MESSAGE, FuzzMessageType.RECORD, big]) }
  }
  if (random.next() < 0.02) return { kind: 'invalid utf-8 text', binary: false, data: Buffer.from([0x5b, 0x31, 0xff, 0xfe, 0xc0, 0x5d]) }
  switch (random.int(8)) {
    case 5:
      // Well-formed or nearly: messages reach the handlers, the throwing ones included.
      return { kind: 'message frame', binary, data: encoded(codec, [FrameType.MESSAGE, random.pick(messageTypes), payload(random)]) }
    case 0:
      return { kind: 'random bytes', binary: true, data: pseudoRandomBytes(seed, random.int(2048)) }
    case 1: {
      const text = pseudoRandomBytes(seed, random.int(512)).toString('latin1').replace(/[^\x20-\x7e]/g, random.pick(['{', '[', '"', ':', ',', '1']))
      return { kind: 'garbage text', binary: false, data: text }
    }
    case 2: {
      const whole = encoded(codec, frame(random))
      return { kind: 'truncated frame', binary, data: whole.slice(0, random.int(Math.max(1, whole.length))) }
    }
    case 3:
      // msgpack headers announcing more than follows: array32, str32, map32, bin32.
      return { kind: 'lying header', binary: true, data: Buffer.from(random.pick([[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01], [0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61], [0xdf, 0x00, 0x10, 0x00, 0x00], [0xc6, 0xff, 0xff, 0xff, 0xf0], [0xc1], [0xd4, 0x01, 0x00]])) }
    case 4:
      return { kind: 'duplicate ids in flight', binary, data: encoded(codec, [FrameType.REQUEST, 7, FuzzCommand.SLOW, { ms: 10 }]) }
    default:
      return { kind: 'wrong-shaped frame', binary, data: encoded(codec, frame(random)) }
  }
}

/** The session a seed stands for: replaying the seed replays the session exactly. */
export function fuzzSession(seed: number, length = 12): FuzzSession {
  const random = new Random(seed)
  const codec: CodecName = random.next() < 0.6 ? 'msgpack' : 'json'
  const messages = Array.from({ length }, (_, i) => message(random, codec, seed * 1000 + i))
  return { codec, messages }
}
