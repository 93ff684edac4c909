import { describe, expect, it } from 'vitest'
import { codecByName, codecForSubprotocol, encodeFrame, tryDecode } from '../src/shared/codec.js'
import { ErrorCode, MeshError } from '../src/shared/errors.js'
import { FrameType, parseClientFrame, parseServerFrame } from '../src/shared/protocol.js'
import { connectClient, startServer } from './support/harness.js'

const sample = {
  text: 'héllo ✓',
  number: 42.5,
  negative: -7,
  big: 2 ** 40,
  flag: true,
  nothing: null,
  list: [1, 'two', { three: 3 }],
  nested: { deep: { deeper: ['x'] } },
}

describe('codecs', () => {
  it.each(['msgpack', 'json'] as const)('%s round-trips frames with nested values', (name) => {
    const codec = codecByName(name)
    const frame = [FrameType.REQUEST, 7, 'echo', sample]
    expect(codec.decode(codec.encode(frame))).toEqual(frame)
    expect(typeof codec.encode(frame) === 'string').toBe(!codec.binary)
  })

  it('msgpack carries binary payloads as bytes', () => {
    const codec = codecByName('msgpack')
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255])
    const decoded = codec.decode(codec.encode([FrameType.EVENT, 'bin', bytes])) as unknown[]
    expect(new Uint8Array(decoded[2] as Uint8Array)).toEqual(bytes)
  })

  it('msgpack writes plain MessagePack: nil for undefined, no extension types', () => {
    const encoded = codecByName('msgpack').encode([FrameType.RESPONSE, 1, undefined]) as Uint8Array
    expect([...encoded]).toEqual([0x93, 0x02, 0x01, 0xc0])
  })

  it('msgpack decodes the timestamp extension as a Date and refuses a frame with an unknown extension type', () => {
    const codec = codecByName('msgpack')
    const request = [0x94, 0x01, 0x05, 0xa4, 0x65, 0x63, 0x68, 0x6f] // [1, 5, "echo", <payload>]
    expect(codec.decode(new Uint8Array([...request, 0xd6, 0xff, 0, 0, 0, 1]))).toEqual([1, 5, 'echo', new Date(1_000)])
    // Never a silent nil in place of the value: the whole frame is unreadable (and answered BAD_REQUEST).
    for (const extension of [[0xd4, 0x05, 0x01], [0xc7, 0x03, 0x10, 1, 2, 3], [0x81, 0xa1, 0x61, 0xd5, 0x7f, 1, 2]]) {
      expect(() => codec.decode(new Uint8Array([...request, ...extension]))).toThrow()
      expect(tryDecode(codec, new Uint8Array([...request, ...extension]))).toBeUndefined()
    }
  })

  it('picks the codec from the subprotocol, msgpack when none', () => {
    expect(codecForSubprotocol('meshkit.json')?.name).toBe('json')
    expect(codecForSubprotocol('meshkit.msgpack')?.name).toBe('msgpack')
    expect(codecForSubprotocol('')?.name).toBe('msgpack')
    expect(codecForSubprotocol('chat')).toBeUndefined()
  })

  it('reports values a codec cannot encode as ENCODE_ERROR', () => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const error = (() => {
      try {
        encodeFrame(codecByName('json'), [FrameType.EVENT, 'x', circular])
      } catch (thrown) {
        return thrown
      }
    })()
    expect(error).toBeInstanceOf(MeshError)
    expect((error as MeshError).code).toBe(ErrorCode.ENCODE_ERROR)
  })

  it('decoding junk never throws and never pollutes prototypes', () => {
    const junk: Array<Uint8Array | string> = [
      new Uint8Array([0xc1]),
      new Uint8Array([0x92, 0x01]),
      new Uint8Array([0xff, 0xff, 0xff]),
      '{"a":',
      '{"__proto__":{"polluted":1}}',
    ]
    for (const data of junk) {
      for (const codec of [codecByName('msgpack'), codecByName('json')]) {
        const decoded = tryDecode(codec, data)
        expect(parseClientFrame(decoded)).toBeNull()
        expect(parseServerFrame(decoded)).toBeNull()
      }
    }
    const evil = new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0x81, 0xa1, 0x70, 0x01])
    tryDecode(codecByName('msgpack'), evil)
    expect(({} as Record<string, unknown>).p).toBeUndefined()
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('accepts only well-formed client frames', () => {
    expect(parseClientFrame([1, 1, 'echo', 'x'])).not.toBeNull()
    expect(parseClientFrame([1, 1, 'echo'])).not.toBeNull()
    expect(parseClientFrame([6, 3])).not.toBeNull()
    for (const bad of [[1, 0, 'echo'], [1, -1, 'echo'], [1, 1.5, 'e'], [1, 2 ** 33, 'e'], [1, 1, 5], [2, 1, 'x'], [6], 'x', null, {}]) {
      expect(parseClientFrame(bad)).toBeNull()
    }
  })

  it.each(['msgpack', 'json'] as const)('a real connection speaks %s end to end', async (codec) => {
    const server = await startServer()
    server.registerCommand('echo', (ctx) => ctx.payload)
    let seen: string | undefined
    server.onConnection((connection) => {
      seen = connection.codec.name
    })
    const client = await connectClient(server, { codec })
    expect(await client.command('echo', sample)).toEqual(sample)
    expect(seen).toBe(codec)
  })
})
