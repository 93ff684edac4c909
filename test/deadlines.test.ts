import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Deadlines, type Timed } from '../src/client/deadlines.js'

interface Entry extends Timed {
  name: string
}

function entry(name: string): Entry {
  return { name, deadline: 0, list: undefined, older: undefined, newer: undefined }
}

/** Deadlines recording what expired, when (fake clock), with which timeout. */
function recorder(): { deadlines: Deadlines<Entry>; expired: string[] } {
  const expired: string[] = []
  const deadlines = new Deadlines<Entry>((expiring, timeout) => expired.push(`${expiring.name}@${performance.now()}/${timeout}`))
  return { deadlines, expired }
}

describe('Deadlines (the client\'s request timeouts)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'performance'] })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('expires each entry at its own deadline, in order, never before it', () => {
    const { deadlines, expired } = recorder()
    deadlines.add(entry('a'), 100)
    vi.advanceTimersByTime(30)
    deadlines.add(entry('b'), 100)
    vi.advanceTimersByTime(69)
    expect(expired).toEqual([])
    vi.advanceTimersByTime(1)
    expect(expired).toEqual(['a@100/100'])
    vi.advanceTimersByTime(29)
    expect(expired).toEqual(['a@100/100'])
    vi.advanceTimersByTime(1)
    expect(expired).toEqual(['a@100/100', 'b@130/100'])
  })

  it('a shorter timeout added after longer ones still expires first', () => {
    const { deadlines, expired } = recorder()
    deadlines.add(entry('long'), 1_000)
    deadlines.add(entry('short'), 50)
    vi.advanceTimersByTime(50)
    expect(expired).toEqual(['short@50/50'])
    vi.advanceTimersByTime(950)
    expect(expired).toEqual(['short@50/50', 'long@1000/1000'])
  })

  it('a removed entry never expires, wherever it sat in its list', () => {
    const { deadlines, expired } = recorder()
    const [a, b, c] = [entry('a'), entry('b'), entry('c')]
    for (const added of [a, b, c]) deadlines.add(added, 100)
    deadlines.remove(b)
    deadlines.remove(a)
    // Removing twice is harmless (an expiry and an answer can meet).
    deadlines.remove(a)
    vi.advanceTimersByTime(1_000)
    expect(expired).toEqual(['c@100/100'])
  })

  it('steady traffic keeps one timer, not one per entry', () => {
    const { deadlines, expired } = recorder()
    const live: Entry[] = []
    let peak = 0
    // 10 timeout periods with 10 entries live at any time, each removed (answered) 10 ms after it was made.
    for (let tick = 0; tick < 2_000; tick++) {
      const made = entry(`e${tick}`)
      deadlines.add(made, 100)
      live.push(made)
      if (live.length > 10) deadlines.remove(live.shift()!)
      peak = Math.max(peak, vi.getTimerCount())
      vi.advanceTimersByTime(1)
    }
    expect(peak).toBe(1)
    expect(expired).toEqual([])
  })

  it('clear() stops every timer, so an idle process can exit, and nothing expires', () => {
    const { deadlines, expired } = recorder()
    deadlines.add(entry('a'), 100)
    deadlines.add(entry('b'), 200)
    expect(vi.getTimerCount()).toBe(2)
    deadlines.clear()
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(1_000)
    expect(expired).toEqual([])
  })

  it('an emptied list lets its timer lapse when it fires', () => {
    const { deadlines } = recorder()
    const a = entry('a')
    deadlines.add(a, 100)
    deadlines.remove(a)
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(100)
    expect(vi.getTimerCount()).toBe(0)
  })
})
