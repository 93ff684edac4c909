import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'tsup'
import browserBuilds from '../../tsup.browser.config.js'

/** A directory holding client.js and client-json.js (with their maps), and how to remove it. */
export interface BrowserBuilds {
  readonly dir: string
  remove(): void
}

/**
 * Builds the browser clients with the real tsup.browser.config.ts into a directory of
 * the caller's own: package.test.ts cleans and rebuilds dist/ in parallel, so a page
 * served from dist/browser could meet a half-written file.
 */
export async function buildBrowserClients(): Promise<BrowserBuilds> {
  const dir = mkdtempSync(join(tmpdir(), 'meshkit-browser-clients-'))
  for (const options of browserBuilds as unknown as object[]) {
    await build({ ...options, outDir: dir, silent: true, config: false })
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
