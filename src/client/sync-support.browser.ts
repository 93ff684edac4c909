import type { SyncCaller } from './sync-caller.js'

// The browser build's stand-in for sync-support.ts (swapped in by tsup.browser.config.ts):
// it never names `./sync-caller.js`, so its Node-only code (worker threads, `ws` in a
// worker) is not in the bundle at all, rather than behind a check a bundler cannot see through.

/** `commandSync` needs worker threads and `Atomics.wait` on the main thread: never in a browser. */
export function isNode(): boolean {
  return false
}

/** Nothing to load: a browser has no `commandSync`. */
export function loadSyncSupport(): Promise<void> | undefined {
  return undefined
}

/** No caller, so `commandSync` throws `NOT_SUPPORTED`. */
export function newSyncCaller(): SyncCaller | undefined {
  return undefined
}
