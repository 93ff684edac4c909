import { describe, expect, it } from 'vitest'
import { useBrowser } from './support/browser.js'

// The browser tests' "no console errors or warnings" rests on the recorder in
// test/support/browser.ts: it must catch each kind of problem it claims to, per page,
// and expectNoProblems() must fail on them.

const browser = useBrowser()

describe('the browser test kit', () => {
  it('records console errors and warnings, uncaught page errors and failed requests per page, and fails on them', async () => {
    const first = await browser.newPage()
    const second = await browser.newPage()
    await first.evaluate(() => {
      console.error('an error')
      console.warn('a warning')
      console.log('a log line is not a problem')
      setTimeout(() => {
        throw new Error('thrown')
      })
    })
    // Nothing listens on port 9 (discard) here: the request fails in the network layer.
    await second.evaluate((url) => fetch(url).catch(() => undefined), 'http://127.0.0.1:9/')
    await expect.poll(() => browser.problems().length).toBeGreaterThanOrEqual(4)
    const problems = browser.problems()
    expect(problems).toEqual(
      expect.arrayContaining([
        'page 1: console.error: an error',
        'page 1: console.warning: a warning',
        'page 1: pageerror: thrown',
        expect.stringMatching(/^page 2: requestfailed: http:\/\/127\.0\.0\.1:9\/ net::ERR_/),
      ]),
    )
    expect(problems.some((line) => line.includes('a log line'))).toBe(false)
    expect(() => browser.expectNoProblems()).toThrow()
    // Only what `allow` names is let through.
    expect(() => browser.expectNoProblems([/^page 1: /])).toThrow()
    browser.expectNoProblems([/^page 1: /, /^page 2: /])
  })

  it('starts the next test afresh: the problems above are forgotten, their pages closed with their context', async () => {
    const page = await browser.newPage()
    expect(browser.problems()).toEqual([])
    expect(page.context().pages()).toEqual([page])
    await page.evaluate(() => console.error('counted again'))
    await expect.poll(() => browser.problems()).toEqual(['page 1: console.error: counted again'])
    expect(() => browser.expectNoProblems()).toThrow()
    browser.expectNoProblems([/counted again/])
  })
})
