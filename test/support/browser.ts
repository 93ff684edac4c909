import { chromium, type Browser, type BrowserContext, type Page, type WebSocket as PageSocket } from 'playwright-core'
import { afterAll, afterEach, beforeAll, beforeEach, expect, inject } from 'vitest'

// The flags that run Debian's chromium headless on these machines: without the
// background-networking ones it keeps dialling Google's hosts through a closed network.
// Playwright gives every launch a fresh, throw-away user data dir of its own.
const launchArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** One headless Chromium for a test file, a fresh context per test, and what went wrong on its pages. */
export interface BrowserSession {
  /** A new page in this test's context; its console errors and warnings, page errors and failed requests are recorded. */
  newPage(): Promise<Page>
  /** Everything recorded in this test so far, as `page N: kind: text` lines. */
  problems(): readonly string[]
  /**
   * Fails unless no page of this test had a problem. `allow` names the few the browser
   * itself reports for something a test does on purpose (a refused reconnect while the
   * server is down); every other line still fails.
   */
  expectNoProblems(allow?: readonly RegExp[]): void
}

/**
 * Registers the hooks of a browser test file: Chromium launched once in beforeAll, a
 * context per test closed in afterEach, the browser closed in afterAll, failed test or not.
 */
export function useBrowser(): BrowserSession {
  let browser: Browser | undefined
  let context: BrowserContext | undefined
  let recorded: string[] = []
  let pages = 0

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: inject('chromiumPath'), args: launchArgs, timeout: 30_000 })
  }, 40_000)
  beforeEach(async () => {
    if (!browser) throw new Error('the browser did not start')
    recorded = []
    pages = 0
    context = await browser.newContext()
  })
  afterEach(async () => {
    await context?.close().catch(() => undefined)
    context = undefined
  })
  afterAll(async () => {
    await context?.close().catch(() => undefined)
    await browser?.close()
  })

  return {
    async newPage() {
      if (!context) throw new Error('newPage() is for tests, after beforeEach')
      const page = await context.newPage()
      watchPage(page, ++pages, (line) => recorded.push(line))
      return page
    },
    problems: () => [...recorded],
    expectNoProblems(allow = []) {
      expect(recorded.filter((line) => !allow.some((pattern) => pattern.test(line)))).toEqual([])
    },
  }
}

function watchPage(page: Page, index: number, record: (line: string) => void): void {
  const prefix = `page ${index}:`
  page.on('console', (message) => {
    const type = message.type()
    if (type === 'error' || type === 'warning') record(`${prefix} console.${type}: ${message.text()}`)
  })
  page.on('pageerror', (error) => record(`${prefix} pageerror: ${error.message}`))
  page.on('requestfailed', (request) => record(`${prefix} requestfailed: ${request.url()} ${request.failure()?.errorText ?? ''}`))
  page.on('crash', () => record(`${prefix} crash`))
}

/** The WebSocket frames of a page, as Playwright reports them: Buffers for binary frames, strings for text. */
export interface PageFrames {
  readonly sent: (string | Buffer)[]
  readonly received: (string | Buffer)[]
}

/** Records every frame of every WebSocket the page opens from now on. */
export function recordFrames(page: Page): PageFrames {
  const frames: PageFrames = { sent: [], received: [] }
  page.on('websocket', (socket: PageSocket) => {
    socket.on('framesent', ({ payload }) => frames.sent.push(payload))
    socket.on('framereceived', ({ payload }) => frames.received.push(payload))
  })
  return frames
}
