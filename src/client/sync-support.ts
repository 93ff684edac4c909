import type { SyncCaller } from './sync-caller.js'

type SyncModule = typeof import('./sync-caller.js')

/** Set once the Node-only module of `commandSync` is loaded; never in browsers. */
let syncModule: SyncModule | undefined
let loading: Promise<void> | undefined

/** Whether this is Node (or a runtime that says it is compatible): `commandSync` is refused anywhere else. */
export function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string'
}

/**
 * `commandSync` cannot await an import (it must not yield), so in Node its module is
 * loaded with the first socket, once per process; browsers never load it, and a
 * bundler keeps it (and `node:worker_threads`) in a chunk of its own. Loading is all
 * it costs a client that never calls `commandSync`: no thread, no socket.
 */
export function loadSyncSupport(): Promise<void> | undefined {
  if (syncModule || !isNode()) return undefined
  return (loading ??= import('./sync-caller.js').then(
    (module) => {
      if (module.supported()) syncModule = module
    },
    // A runtime that cannot load it: commandSync then throws NOT_SUPPORTED.
    () => {},
  ))
}

/** A caller for one client, or undefined where `commandSync` cannot work (browsers). */
export function newSyncCaller(): SyncCaller | undefined {
  return syncModule ? new syncModule.SyncCaller() : undefined
}
