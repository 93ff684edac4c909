import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { decideChromium, ensureChromium } from './support/chromium.js'

// The finder's decision on machines this one is not: a browser name that exists nowhere
// stands for "chromium is not installed", without uninstalling anything.

const missing = 'meshkit-no-such-browser'

describe('finding chromium for the browser tests', () => {
  it('uses CHROMIUM_PATH when it exists, and stops with an instruction when it does not', () => {
    expect(decideChromium({ explicitPath: process.execPath })).toEqual({ action: 'use', path: process.execPath })
    const decision = decideChromium({ explicitPath: `/nonexistent/${missing}` })
    expect(decision.action).toBe('stop')
  })

  it('finds a binary on PATH when /usr/bin has none', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshkit-chromium-finder-'))
    try {
      writeFileSync(join(dir, missing), '', { mode: 0o755 })
      expect(decideChromium({ name: missing, isRoot: false, path: `/nonexistent:${dir}` })).toEqual({ action: 'use', path: join(dir, missing) })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('installs the package when missing and running as root with apt-get', () => {
    const path = process.env.PATH ?? ''
    expect(decideChromium({ name: missing, isRoot: true, path: `${path}:/usr/bin` })).toEqual({ action: 'install', name: missing })
  })

  it('stops with a one-line instruction when missing and not root, or root without apt-get', () => {
    for (const search of [
      { name: missing, isRoot: false },
      { name: missing, isRoot: true, path: '/nonexistent' },
    ]) {
      const decision = decideChromium(search)
      expect(decision.action).toBe('stop')
      const instruction = decision.action === 'stop' ? decision.instruction : ''
      expect(instruction).not.toContain('\n')
      expect(instruction).toContain(missing)
      expect(instruction).toContain('CHROMIUM_PATH')
    }
  })

  it('ensureChromium throws that instruction instead of installing when it may not', () => {
    expect(() => ensureChromium({ name: missing, isRoot: false })).toThrow(/CHROMIUM_PATH/)
  })
})
