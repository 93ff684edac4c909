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

/** A count: a whole number, 1 or more (`Infinity` too where `unbounded` allows it). */
export function requireCount(name: string, value: unknown, unbounded = false): void {
  if (unbounded && value === Infinity) return
  if (!(Number.isSafeInteger(value) && (value as number) >= 1)) {
    throw new RangeError(`${name} must be an integer, 1 or more${unbounded ? ', or Infinity' : ''}, got ${String(value)}`)
  }
}

/** Every key of an options interface, as a record: the compiler then insists that a new option is listed. */
export type OptionKeys<T> = { readonly [K in keyof Required<T>]: true }

/**
 * A misspelt option (`pingInteval`) would otherwise be ignored silently and its
 * default used: it throws, naming the key. `prefix` names nested options (`sync.`).
 */
export function requireKnownKeys<T extends object>(options: T, known: OptionKeys<T>, prefix = ''): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${prefix === '' ? 'options' : prefix.slice(0, -1)} must be an object`)
  }
  for (const key of Object.keys(options)) {
    if (!Object.prototype.hasOwnProperty.call(known, key)) throw new TypeError(`Unknown option "${prefix}${key}"`)
  }
}
