/** Where the server reports what it cannot throw. Any method may be left out. */
export interface Logger {
  debug?(message: string, details?: Record<string, unknown>): void
  info?(message: string, details?: Record<string, unknown>): void
  warn?(message: string, details?: Record<string, unknown>): void
  error?(message: string, details?: Record<string, unknown>): void
}

export const silentLogger: Logger = {}
