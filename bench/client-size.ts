// What a browser page downloads for each client: min+gzip of meshkit's browser builds beside
// socket.io-client's and centrifuge's, each bundled the same way (esbuild, browser, minified,
// one named import as an app would write it) and gzipped at level 9. Sizes are exact and do
// not depend on the machine's load.
//   npm run bench:size          prints the table (npm run bench appends it to its results)
// Needs `npm run build` first: meshkit is bundled from its exports map, as a bundler sees it.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import { repoRoot } from './support.js'

interface Client {
  label: string
  /** What the page's own code imports. */
  entry: string
}

const clients: Client[] = [
  { label: 'meshkit/client (msgpack + JSON)', entry: `export { MeshClient } from 'meshkit/client'` },
  { label: 'meshkit/client/json (JSON only)', entry: `export { MeshClient } from 'meshkit/client/json'` },
  { label: 'socket.io-client', entry: `export { io } from 'socket.io-client'` },
  { label: 'centrifuge (JSON; protobuf is a separate entry)', entry: `export { Centrifuge } from 'centrifuge'` },
]

export interface ClientSize {
  label: string
  version: string
  minified: number
  gzip: number
  brotli: number
}

function versionOf(label: string): string {
  // Not through require.resolve: centrifuge's exports map does not export its package.json.
  const file = label.startsWith('meshkit') ? join(repoRoot, 'package.json') : join(repoRoot, 'node_modules', label.split(' ')[0]!, 'package.json')
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
}

async function measure(client: Client): Promise<ClientSize> {
  const result = await build({
    stdin: { contents: client.entry, resolveDir: repoRoot, loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
    // Not the repository's tsconfig: its paths map meshkit/* to src/, and a user's bundler sees the exports map.
    tsconfigRaw: {},
    define: { 'process.env.NODE_ENV': '"production"' },
  })
  const bytes = result.outputFiles[0]!.contents
  return {
    label: client.label,
    version: versionOf(client.label),
    minified: bytes.byteLength,
    gzip: gzipSync(bytes, { level: 9 }).byteLength,
    brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).byteLength,
  }
}

/** Every client that is installed; a missing one is reported in the table, not fatal. */
export async function clientSizes(): Promise<{ sizes: ClientSize[]; missing: string[] }> {
  if (!existsSync(join(repoRoot, 'dist/browser/client.js'))) throw new Error('dist/browser/client.js is missing: run `npm run build` first')
  const sizes: ClientSize[] = []
  const missing: string[] = []
  for (const client of clients) {
    try {
      sizes.push(await measure(client))
    } catch {
      missing.push(client.label)
    }
  }
  return { sizes, missing }
}

const kb = (bytes: number): string => (bytes / 1024).toFixed(1)

/** A markdown table; the ratio column compares each client's gzip with meshkit's full build. */
export function clientSizeTable({ sizes, missing }: { sizes: ClientSize[]; missing: string[] }): string {
  const base = sizes[0]?.gzip ?? 1
  const rows = sizes.map((size) => `| ${size.label} | ${size.version} | ${kb(size.minified)} | ${kb(size.gzip)} | ${kb(size.brotli)} | ${(size.gzip / base).toFixed(2)} |`)
  return [
    '## Browser client size',
    '',
    'Each client bundled by esbuild for the browser (minified, ESM, one named import), then gzip -9 and brotli -11; KiB.',
    '',
    '| client | version | min | min+gzip | min+brotli | gzip ÷ meshkit |',
    '|---|---|---:|---:|---:|---:|',
    ...rows,
    ...(missing.length > 0 ? ['', `Not installed, not measured: ${missing.join(', ')}.`] : []),
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(clientSizeTable(await clientSizes()))
}
