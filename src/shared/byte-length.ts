/** Whether `data` takes more than `limit` bytes on the wire (a string as UTF-8), without encoding a string that is clearly within or over it. */
export function exceedsBytes(data: Uint8Array | string, limit: number): boolean {
  if (typeof data !== 'string') return data.byteLength > limit
  // A UTF-16 unit takes one to three UTF-8 bytes: count exactly only when the bounds disagree.
  if (data.length * 3 <= limit) return false
  if (data.length > limit) return true
  return new TextEncoder().encode(data).byteLength > limit
}
