import { ErrorCode, MeshError } from '../shared/errors.js'

/**
 * Why a connection attempt failed: the `data` of a `CONNECTION_FAILED` error.
 * `reason` tells the cases apart. Only Node (`ws`) reports `http` and `network`:
 * a browser's WebSocket hides the HTTP status and the system error, so there a
 * refused upgrade or an unreachable host arrives as `closed` with `closeCode` 1006.
 */
export type ConnectionFailure =
  /** The server answered the upgrade with this HTTP status instead of 101 (401, 403, 404, 503...). */
  | { reason: 'http'; status: number }
  /** A system error: `ECONNREFUSED`, `ENOTFOUND`, `ECONNRESET`, TLS codes such as `CERT_HAS_EXPIRED`. */
  | { reason: 'network'; code: string }
  /** No hello from the server within `connectTimeout` milliseconds. */
  | { reason: 'timeout'; timeout: number }
  /** The socket closed before the server's hello, with no further detail. */
  | { reason: 'closed'; closeCode: number; closeReason: string }
  /** The URL could not be used: the WebSocket refused it, or the `url` function threw or returned no string. */
  | { reason: 'url' }

/** What a socket told about its failure; only `ws` tells anything. */
export interface SocketFailure {
  status?: number
  code?: string
}

/** HTTP statuses that another attempt with the same credentials would only repeat. */
const REFUSALS = new Set([401, 403])

export function connectionFailed(url: string | undefined, failure: ConnectionFailure, cause?: unknown): MeshError {
  const where = url === undefined ? 'the server' : url
  return new MeshError(ErrorCode.CONNECTION_FAILED, `Could not connect to ${where}: ${describe(failure)}`, { data: failure, cause })
}

/** The failure of a socket that ended before the hello. */
export function socketFailure(failure: SocketFailure | undefined, closeCode: number, closeReason: string): ConnectionFailure {
  if (failure?.status !== undefined) return { reason: 'http', status: failure.status }
  if (failure?.code !== undefined) return { reason: 'network', code: failure.code }
  return { reason: 'closed', closeCode, closeReason }
}

/** The HTTP status of an upgrade refused for its credentials (401, 403), if that is what `error` reports. */
export function refusalStatus(error: MeshError): number | undefined {
  if (error.code !== ErrorCode.CONNECTION_FAILED) return undefined
  const data = error.data as ConnectionFailure | undefined
  return data?.reason === 'http' && REFUSALS.has(data.status) ? data.status : undefined
}

function describe(failure: ConnectionFailure): string {
  switch (failure.reason) {
    case 'http':
      return `the server answered the upgrade with HTTP ${failure.status}`
    case 'network':
      return failure.code
    case 'timeout':
      return `no hello within ${failure.timeout} ms`
    case 'closed':
      return failure.closeReason || `socket closed with code ${failure.closeCode}`
    case 'url':
      return 'the URL could not be used'
  }
}
