/** Merges user options over defaults once; an option given as `undefined` keeps its default. */
export function mergeOptions<D extends object, O extends object>(defaults: D, options: O): D & O {
  const merged: Record<string, unknown> = { ...(defaults as Record<string, unknown>) }
  for (const [key, value] of Object.entries(options)) if (value !== undefined) merged[key] = value
  return merged as D & O
}

/** Bad configuration throws at construction, naming the option. */
export function requirePositive(name: string, value: unknown): void {
  if (!(typeof value === 'number' && value > 0)) {
    throw new RangeError(`${name} must be a positive number, got ${String(value)}`)
  }
}

export function requireNonNegative(name: string, value: unknown): void {
  if (!(typeof value === 'number' && value >= 0)) {
    throw new RangeError(`${name} must be zero or more, got ${String(value)}`)
  }
}
