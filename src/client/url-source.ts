import { connectionFailed } from './connection-failure.js'

/**
 * Where the client connects: one URL, several instances of the server (reconnect
 * attempts go round the list), or a function called before every attempt (sync or
 * async), so each attempt can carry a fresh token in its query string.
 */
export type ClientUrl = string | readonly string[] | (() => string | Promise<string>)

/** The URL of each connection attempt. */
export class UrlSource {
  private readonly list: readonly string[] | undefined
  private readonly factory: (() => string | Promise<string>) | undefined
  private index = 0
  private last: string | undefined

  constructor(url: ClientUrl) {
    if (typeof url === 'function') {
      this.factory = url
      return
    }
    this.list = typeof url === 'string' ? [url] : Array.isArray(url) ? [...(url as readonly string[])] : []
    if (this.list.length === 0 || this.list.some((entry) => typeof entry !== 'string')) {
      throw new TypeError('MeshClient needs a URL, a non-empty list of URLs, or a function that returns a URL')
    }
    this.last = this.list[0]
  }

  /** The URL of the current (or last) attempt; undefined before a `url` function was first called. */
  get current(): string | undefined {
    return this.last
  }

  /** The next attempt goes to the next URL of a list (a function decides for itself). */
  rotate(): void {
    if (!this.list) return
    this.index = (this.index + 1) % this.list.length
    this.last = this.list[this.index]
  }

  /** The URL for the attempt about to start; rejects with `CONNECTION_FAILED` (`reason: 'url'`) if the function fails. */
  async resolve(): Promise<string> {
    if (!this.factory) return this.last!
    let url: unknown
    try {
      url = await this.factory()
    } catch (error) {
      throw connectionFailed(undefined, { reason: 'url' }, error)
    }
    if (typeof url !== 'string') {
      throw connectionFailed(undefined, { reason: 'url' }, new TypeError(`The url function returned ${typeof url}, not a string`))
    }
    this.last = url
    return url
  }
}
