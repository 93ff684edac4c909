import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (path: string): string => fileURLToPath(new URL(`./src/${path}`, import.meta.url))

export default defineConfig({
  resolve: {
    // Tests import the package by its public names, resolved to the sources.
    alias: [
      { find: /^meshkit\/server$/, replacement: src('server/index.ts') },
      { find: /^meshkit\/client$/, replacement: src('client/index.ts') },
      { find: /^meshkit\/mesh\/server$/, replacement: src('compat/mesh/server.ts') },
      { find: /^meshkit\/mesh\/client$/, replacement: src('compat/mesh/client.ts') },
      { find: /^meshkit\/mesa$/, replacement: src('compat/mesa/index.ts') },
      { find: /^meshkit$/, replacement: src('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Type tests (*.test-d.ts): checked by tsc, not run; a type that stops inferring fails them.
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 15_000,
    hookTimeout: 30_000,
  },
})
