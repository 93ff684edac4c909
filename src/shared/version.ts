/**
 * meshkit's package version, as a constant compiled into the code. Never read from
 * `package.json` at run time: Mesa did, relative to the process's working directory,
 * and crashed wherever that was not its own folder (and a bundled client has no
 * `package.json` at all). `npm version` rewrites this file (scripts/write-version.mjs),
 * and test/version.test.ts fails if it and `package.json` disagree.
 */
export const PACKAGE_VERSION = '0.1.0'
