// Run by `npm version` (the "version" script): writes package.json's new version into
// src/shared/version.ts, so that the code knows it without reading package.json at run time.
import { readFileSync, writeFileSync } from 'node:fs'

const root = new URL('../', import.meta.url)
const { version } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'))
const file = new URL('src/shared/version.ts', root)
const text = readFileSync(file, 'utf8')
const next = text.replace(/export const PACKAGE_VERSION = '[^']*'/, `export const PACKAGE_VERSION = '${version}'`)
if (next === text && !text.includes(`'${version}'`)) throw new Error('src/shared/version.ts has no PACKAGE_VERSION line to rewrite')
writeFileSync(file, next)
