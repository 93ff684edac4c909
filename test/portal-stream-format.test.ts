import { describe, expect, it } from 'vitest'
import { rendezvousScore } from '../src/server/portal/lease-table.js'
import { fnv1a, partitionOf } from '../src/server/portal/stream-format.js'

/**
 * The test vectors docs/protocol.md gives workers in other languages: servers and
 * portals must compute exactly these, or a worker built from the document would
 * read the wrong partitions or disagree on who holds one.
 */
describe('portal stream format test vectors (docs/protocol.md)', () => {
  it('partitions connection ids by FNV-1a of their UTF-8 bytes', () => {
    const vectors: Array<[string, number, number, number]> = [
      ['', 0x811c9dc5, 5, 2],
      ['a', 0xe40c292c, 12, 5],
      ['café', 0xa82b5049, 9, 3],
      ['aBcDeFgHiJkL.V1StGXR8_Z5jdHi6B-myT', 0xd1d5ff98, 8, 1],
    ]
    for (const [id, hash, of16, of7] of vectors) {
      expect(fnv1a(id)).toBe(hash)
      expect(partitionOf(id, 16)).toBe(of16)
      expect(partitionOf(id, 7)).toBe(of7)
    }
  })

  it('scores portals for partitions with FNV-1a and murmur3\'s finalizer', () => {
    expect(rendezvousScore('portal-a:0')).toBe(0x6aa8db18)
    expect(rendezvousScore('portal-b:0')).toBe(0x41995f0b)
    expect(rendezvousScore('portal-a:2')).toBe(0x039c0653)
    expect(rendezvousScore('portal-b:2')).toBe(0x4ee18288)
  })
})
