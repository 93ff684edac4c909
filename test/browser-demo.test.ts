import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest'
import { Dispatcher } from 'meshkit/server'
import { startExampleServer, type ExampleServer, type ExampleServerOptions } from '../examples/app.js'
import { recordFrames, useBrowser } from './support/browser.js'
import { buildBrowserClients, type BrowserBuilds } from './support/browser-builds.js'
import { uniqueNamespace } from './support/cluster.js'

// The `npm start` demo (examples/) driven by a real headless Chromium: chat, presence,
// a server restart and both codecs, as a person would use them in two tabs.

const browser = useBrowser()
let builds: BrowserBuilds

beforeAll(async () => {
  builds = await buildBrowserClients()
}, 60_000)

afterAll(() => builds?.remove())

// Generous: presence leaves wait out the server's leave delay, and reconnects back off.
const settle = { timeout: 15_000 }

async function startDemo(options: ExampleServerOptions = {}): Promise<ExampleServer> {
  const demo = await startExampleServer({ port: 0, host: '127.0.0.1', clientDir: builds.dir, ...options })
  onTestFinished(() => demo.close())
  return demo
}

/** A tab on the demo, once it is connected and shows itself in the room's member list. */
async function openDemo(demo: ExampleServer, query = ''): Promise<Page> {
  const page = await browser.newPage()
  await page.goto(`http://127.0.0.1:${demo.port}/${query}`)
  await page.locator('#status[data-state="open"]').waitFor()
  await page.locator('#members li.member[data-self="true"]').waitFor()
  return page
}

/** What the page exposes for tests: `window.demo.client`, its MeshClient. */
interface Demo {
  demo: { client: { id: string; state: string; on(event: string, listener: (payload: unknown) => void): () => void } }
}

function clientId(page: Page): Promise<string> {
  return page.evaluate(() => (window as unknown as Demo).demo.client.id)
}

async function say(page: Page, text: string): Promise<void> {
  await page.locator('#text').fill(text)
  await page.locator('#text').press('Enter')
}

function messageTexts(page: Page): Promise<string[]> {
  return page.locator('#messages li.message .text').allTextContents()
}

/** The member list as `name typing` lines, sorted: what a person sees, whatever order it is drawn in. */
async function memberLines(page: Page): Promise<string[]> {
  const lines = await page.locator('#members li.member').evaluateAll((items) =>
    items.map((item) => `${item.querySelector('.name')?.textContent} ${(item as HTMLElement).dataset.typing}`),
  )
  return lines.sort()
}

// Pages on a machine shared with other test files take seconds to load and settle.
describe('the demo in a real browser', { timeout: 30_000 }, () => {
  it('two tabs chat: a message shows in both with its sender’s name; rooms switch, history on join, the latency meter', async () => {
    const demo = await startDemo()
    const [alice, bob] = await Promise.all([openDemo(demo), openDemo(demo)])
    const [aliceName, aliceId] = [await alice.inputValue('#name'), await clientId(alice)]
    await say(alice, 'hello from alice')
    for (const page of [alice, bob]) {
      const message = page.locator('#messages li.message', { hasText: 'hello from alice' })
      await message.waitFor()
      expect(await message.locator('.name').textContent()).toBe(aliceName)
      expect(await message.getAttribute('data-from')).toBe(aliceId)
    }
    // Submitting clears the input.
    expect(await alice.inputValue('#text')).toBe('')

    // Another room: its own (empty) log, and alice leaves general's member list at once.
    await alice.locator('#rooms a[href="#random"]').click()
    await alice.locator('#rooms a[href="#random"][aria-current="page"]').waitFor()
    expect(await alice.locator('#rooms a[aria-current]').count()).toBe(1)
    await expect.poll(() => messageTexts(alice), settle).toEqual([])
    await expect.poll(() => bob.locator('#members li.member').count(), settle).toBe(1)
    // Back in general, the channel's history brings the message back, once.
    await alice.locator('#rooms a[href="#general"]').click()
    await expect.poll(() => messageTexts(alice), settle).toEqual(['hello from alice'])
    await expect.poll(() => bob.locator('#members li.member').count(), settle).toBe(2)

    // The latency meter, once the server has measured a round trip (every 2 s).
    const latency = bob.locator('#latency')
    await expect.poll(() => latency.getAttribute('data-ms'), settle).toMatch(/^\d+(\.\d+)?$/)
    expect(await latency.textContent()).toMatch(/^\d+ ms$/)
    browser.expectNoProblems()
  })

  it('presence: both tabs list both members, typing and renaming show on the other, a closed tab leaves', async () => {
    // A short leave delay keeps the test quick; the leave still goes through it.
    const demo = await startDemo({ presenceLeaveDelay: 1_000 })
    const [alice, bob] = await Promise.all([openDemo(demo), openDemo(demo)])
    const [aliceName, bobName] = [await alice.inputValue('#name'), await bob.inputValue('#name')]
    expect(aliceName).toMatch(/^guest-/)
    const both = [`${aliceName} false`, `${bobName} false`].sort()
    for (const page of [alice, bob]) {
      await expect.poll(() => memberLines(page), settle).toEqual(both)
      // Each tab marks its own entry, and only that one.
      const self = page.locator('#members li.member[data-self="true"]')
      expect(await self.count()).toBe(1)
      expect(await self.getAttribute('data-connection-id')).toBe(await clientId(page))
    }
    const aliceOnBob = bob.locator(`#members li.member[data-connection-id="${await clientId(alice)}"]`)

    await alice.locator('#text').fill('hel')
    await expect.poll(() => aliceOnBob.getAttribute('data-typing'), settle).toBe('true')
    await alice.locator('#text').fill('')
    await expect.poll(() => aliceOnBob.getAttribute('data-typing'), settle).toBe('false')

    await alice.locator('#name').fill('alice')
    await alice.locator('#name').blur()
    await expect.poll(() => aliceOnBob.locator('.name').textContent(), settle).toBe('alice')

    await alice.close()
    await expect.poll(() => memberLines(bob), settle).toEqual([`${bobName} false`])
    browser.expectNoProblems()
  })

  it('after a server restart both tabs reconnect, every message once and in order, no gap, both members back', async () => {
    const redis = inject('redisUrl')
    const namespace = uniqueNamespace('browser-demo')
    const first = await startDemo({ redis, namespace })
    const [alice, bob] = await Promise.all([openDemo(first), openDemo(first)])
    await say(alice, 'before the restart')
    for (const page of [alice, bob]) await page.locator('#messages li.message', { hasText: 'before the restart' }).waitFor()

    // Down until each tab has been refused once: a real outage's path, with its backoff.
    const refusedOnce = [alice, bob].map((page) =>
      page.evaluate(() => new Promise<string | undefined>((resolve) => (window as unknown as Demo).demo.client.on('error', (error) => resolve((error as { code?: string }).code)))),
    )
    await first.close()
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => (window as unknown as Demo).demo.client.state === 'reconnecting', undefined, settle)
      // The visible indicator says so too.
      await page.locator('#status[data-state="reconnecting"]', { hasText: 'Reconnecting' }).waitFor(settle)
    }
    expect(await Promise.all(refusedOnce)).toEqual(['CONNECTION_FAILED', 'CONNECTION_FAILED'])
    const dispatcher = new Dispatcher(redis, { namespace })
    try {
      for (const n of [1, 2, 3]) await dispatcher.writeChannel('chat:general', { from: 'bot', name: 'bot', text: `while down ${n}`, at: Date.now() }, 50)
    } finally {
      await dispatcher.close()
    }
    const second = await startDemo({ redis, namespace, port: first.port })

    for (const page of [alice, bob]) await page.locator('#status[data-state="open"]').waitFor(settle)
    // A message sent after the restart is a fence: whatever the pages were due has come before it.
    await say(bob, 'after the restart')
    const expected = ['before the restart', 'while down 1', 'while down 2', 'while down 3', 'after the restart']
    for (const page of [alice, bob]) {
      await page.locator('#messages li.message', { hasText: 'after the restart' }).waitFor(settle)
      expect(await messageTexts(page)).toEqual(expected)
      expect(await page.locator('#messages li.notice[data-kind="gap"]').count()).toBe(0)
    }
    const ids = [await clientId(alice), await clientId(bob)].sort()
    for (const page of [alice, bob]) {
      await expect
        .poll(() => page.locator('#members li.member').evaluateAll((items) => items.map((item) => (item as HTMLElement).dataset.connectionId).sort()), settle)
        .toEqual(ids)
    }
    expect(second.port).toBe(first.port)
    // Chromium itself reports each refused attempt on the console (refused while the port
    // is closed, or a 503 from the server while it shuts down); nothing else may appear.
    const refused = new RegExp(`console\\.error: WebSocket connection to 'ws://127\\.0\\.0\\.1:${first.port}/' failed: .*(net::ERR_CONNECTION_REFUSED|Unexpected response code: 503)$`)
    browser.expectNoProblems([refused])
  }, 45_000)

  it('a msgpack tab and a JSON tab talk to each other, each codec seen on the wire', async () => {
    const demo = await startDemo()
    const [packed, json] = await Promise.all([browser.newPage(), browser.newPage()])
    const frames = { msgpack: recordFrames(packed), json: recordFrames(json) }
    await Promise.all([packed.goto(`http://127.0.0.1:${demo.port}/`), json.goto(`http://127.0.0.1:${demo.port}/?codec=json`)])
    for (const page of [packed, json]) await page.locator('#members li.member[data-self="true"]').waitFor()
    expect(await packed.textContent('#codec')).toBe('msgpack')
    expect(await json.textContent('#codec')).toBe('json')

    await say(packed, 'sent as msgpack')
    await say(json, 'sent as json')
    for (const page of [packed, json]) {
      await page.locator('#messages li.message', { hasText: 'sent as json' }).waitFor()
      expect(await messageTexts(page)).toEqual(expect.arrayContaining(['sent as msgpack', 'sent as json']))
    }
    for (const [codec, { sent, received }] of Object.entries(frames)) {
      expect(sent.length, codec).toBeGreaterThan(0)
      expect(received.length, codec).toBeGreaterThan(0)
      for (const payload of [...sent, ...received]) expect(Buffer.isBuffer(payload), codec).toBe(codec === 'msgpack')
    }
    expect(frames.json.sent.some((payload) => String(payload).includes('"sent as json"'))).toBe(true)
    expect(frames.msgpack.sent.some((payload) => Buffer.from(payload).includes('sent as msgpack'))).toBe(true)
    browser.expectNoProblems()
  })
})
