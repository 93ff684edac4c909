import { fileURLToPath } from 'node:url'
import { defineConfig, type Options } from 'tsup'
import type { Plugin } from 'esbuild'

const source = (file: string): string => fileURLToPath(new URL(`./src/${file}`, import.meta.url))

/**
 * The seams where the client reaches Node-only code: `commandSync` (worker threads) and
 * `ws` (Node before its own WebSocket). Both are swapped for browser stand-ins, so the
 * bundle holds no `node:` import, no `require`, and nothing a browser cannot run. With
 * `jsonOnly`, msgpackr is swapped out too.
 */
function browserSeams(jsonOnly: boolean): Plugin {
  return {
    name: 'meshkit-browser-seams',
    setup(build) {
      build.onResolve({ filter: /^ws$/ }, () => ({ path: source('client/browser-websocket.ts') }))
      build.onResolve({ filter: /\/sync-support\.js$/ }, () => ({ path: source('client/sync-support.browser.ts') }))
      if (jsonOnly) build.onResolve({ filter: /\/msgpack-codec\.js$/ }, () => ({ path: source('shared/msgpack-codec.json-only.ts') }))
    },
  }
}

function browserBuild(name: string, jsonOnly: boolean): Options {
  return {
    entry: { [name]: 'src/client/index.ts' },
    outDir: 'dist/browser',
    format: ['esm'],
    platform: 'browser',
    target: 'es2022',
    noExternal: [/.*/],
    splitting: false,
    minify: true,
    sourcemap: true,
    // Built after the Node build (`npm run build`), which cleans dist/.
    clean: false,
    dts: false,
    esbuildPlugins: [browserSeams(jsonOnly)],
  }
}

// The browser builds of meshkit/client: self-contained ES modules (msgpackr and nanoid
// inside), minified, for bundlers (the `browser` export condition) and for a plain
// `<script type="module">`. client-json.js leaves msgpack out.
export default defineConfig([browserBuild('client', false), browserBuild('client-json', true)])
