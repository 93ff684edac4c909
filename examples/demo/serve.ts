// Serves the demo's few files. A fixed table, not a directory: no path from a request
// ever reaches the file system, so there is nothing to traverse.
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

interface StaticFile {
  path: string
  type: string
}

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url))

/** URL path → file, for the page, its script and style, and meshkit's two browser builds. */
export function demoFiles(clientDir: string): Map<string, StaticFile> {
  const html = 'text/html; charset=utf-8'
  const js = 'text/javascript; charset=utf-8'
  const map = 'application/json; charset=utf-8'
  return new Map([
    ['/', { path: here('./index.html'), type: html }],
    ['/app.js', { path: here('./app.js'), type: js }],
    ['/style.css', { path: here('./style.css'), type: 'text/css; charset=utf-8' }],
    ['/meshkit/client.js', { path: join(clientDir, 'client.js'), type: js }],
    ['/meshkit/client.js.map', { path: join(clientDir, 'client.js.map'), type: map }],
    ['/meshkit/client-json.js', { path: join(clientDir, 'client-json.js'), type: js }],
    ['/meshkit/client-json.js.map', { path: join(clientDir, 'client-json.js.map'), type: map }],
  ])
}

const headers = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  // Scripts and styles from this origin only; the page connects back to this host.
  'Content-Security-Policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
}

/** The HTTP handler: the table's files, 404 for other paths, 405 for other methods. */
export function serveFiles(files: Map<string, StaticFile>): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const path = (request.url ?? '/').split('?')[0]!
    const file = files.get(path)
    if (request.method !== 'GET' && request.method !== 'HEAD') return answer(response, 405, 'Method Not Allowed', { Allow: 'GET, HEAD' })
    if (!file) return answer(response, 404, 'Not Found')
    readFile(file.path).then(
      (body) => {
        response.writeHead(200, { ...headers, 'Content-Type': file.type, 'Content-Length': body.length })
        response.end(request.method === 'HEAD' ? undefined : body)
      },
      () => answer(response, 503, 'The browser build is missing: run `npm run build`'),
    )
  }
}

function answer(response: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  response.writeHead(status, { ...headers, ...extra, 'Content-Type': 'text/plain; charset=utf-8' })
  response.end(`${text}\n`)
}
