/** Where the server reports what it cannot throw. Any method may be left out. */
export interface Logger {
  debug?(message: string, details?: Record<string, unknown>): void
  info?(message: string, details?: Record<string, unknown>): void
  warn?(message: string, details?: Record<string, unknown>): void
  error?(message: string, details?: Record<string, unknown>): void
}

export const silentLogger: Logger = {}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const

/**
 * Whether the logger takes `(details, message)`, as pino and bunyan do: they would
 * drop a details object given second (pino uses extra arguments only for `%s`
 * placeholders). Console, winston and most others take `(message, details)`.
 * Recognised by shape, so that the library needs no pino dependency: pino loggers
 * have `bindings()`, bunyan loggers a `fields` object, and both a `child()`.
 */
function takesDetailsFirst(logger: Logger): boolean {
  const candidate = logger as Logger & { bindings?: unknown; child?: unknown; fields?: unknown }
  if (typeof candidate.child !== 'function') return false
  return typeof candidate.bindings === 'function' || (typeof candidate.fields === 'object' && candidate.fields !== null)
}

/** pino and bunyan serialise an error (message, stack, code) only under `err`; under any other key it would print as `{}`. */
function detailsFor(details: Record<string, unknown>): Record<string, unknown> {
  if (!(details.error instanceof Error) || 'err' in details) return details
  const { error, ...rest } = details
  return { ...rest, err: error }
}

/**
 * The application's logger, made safe to call from anywhere: a logger that throws
 * (a bug, a closed stream) must not turn a report into an unhandled rejection that
 * ends the process. Levels the logger lacks stay absent, so `logger.debug?.(...)`
 * still builds no arguments for them. A pino or bunyan logger is called its own way,
 * `(details, message)`, so that details reach its output.
 */
export function guardLogger(logger: Logger | undefined): Logger {
  if (!logger) return silentLogger
  const detailsFirst = takesDetailsFirst(logger)
  const guarded: Logger = {}
  for (const level of LEVELS) {
    const method = logger[level] as ((...args: unknown[]) => void) | undefined
    if (typeof method !== 'function') continue
    guarded[level] = (message, details) => {
      try {
        if (details === undefined) method.call(logger, message)
        else if (detailsFirst) method.call(logger, detailsFor(details), message)
        else method.call(logger, message, details)
      } catch {
        // Nowhere left to report it.
      }
    }
  }
  return guarded
}
