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
 * The application's logger, made safe to call from anywhere: a logger that throws
 * (a bug, a closed stream) must not turn a report into an unhandled rejection that
 * ends the process. Levels the logger lacks stay absent, so `logger.debug?.(...)`
 * still builds no arguments for them.
 */
export function guardLogger(logger: Logger | undefined): Logger {
  if (!logger) return silentLogger
  const guarded: Logger = {}
  for (const level of LEVELS) {
    const method = logger[level]
    if (typeof method !== 'function') continue
    guarded[level] = (message, details) => {
      try {
        method.call(logger, message, details)
      } catch {
        // Nowhere left to report it.
      }
    }
  }
  return guarded
}
