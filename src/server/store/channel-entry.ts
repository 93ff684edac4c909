/**
 * A channel message as stored in history and published on the bus: the offset in
 * decimal digits, a colon, then the message's msgpack bytes. Plain bytes, so that a
 * Lua script can build it and every store produces the same thing.
 */
export function encodeChannelEntry(offset: number, message: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`${offset}:`)
  const entry = new Uint8Array(prefix.length + message.byteLength)
  entry.set(prefix)
  entry.set(message, prefix.length)
  return entry
}

const COLON = 0x3a

/** The offset and message bytes of an entry, or `undefined` for bytes that are not one. */
export function decodeChannelEntry(entry: Uint8Array): { offset: number; message: Uint8Array } | undefined {
  const colon = entry.indexOf(COLON)
  if (colon <= 0 || colon > 20) return undefined
  let offset = 0
  for (let index = 0; index < colon; index++) {
    const digit = entry[index]! - 0x30
    if (digit < 0 || digit > 9) return undefined
    offset = offset * 10 + digit
  }
  return { offset, message: entry.subarray(colon + 1) }
}

/**
 * The first `count` entries (of a newest-first history) whose messages, without
 * their offset prefixes, total at most `maxBytes`; it stops at the first entry
 * that does not fit, so what it returns is always the newest run.
 */
export function newestWithin(history: readonly Uint8Array[], count: number, maxBytes = Infinity): Uint8Array[] {
  const entries: Uint8Array[] = []
  let budget = maxBytes
  for (const entry of history) {
    if (entries.length >= count) break
    budget -= entry.byteLength - entry.indexOf(COLON) - 1
    if (budget < 0) break
    entries.push(entry)
  }
  return entries
}
