import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (path: string): string => fileURLToPath(new URL(`./src/${path}`, import.meta.url))

/**
 * `npm run test:cluster` (MESHKIT_TEST_REDIS=cluster) runs these multi-instance and fault
 * suites again, on a real local Redis Cluster instead of one redis-server: they reach
 * Redis only through test/support/shared-redis.ts. `npm test` runs every file once on one
 * Redis, and the cluster-only files (store contract, sharded bus, portals, failover and
 * migration) on clusters of their own.
 */
const clusterSuites = [
  'channel-recovery',
  'channels-smoke',
  'cluster',
  'dispatcher-channels',
  'drain-cluster',
  'instance-death',
  'portals-pause',
  'portals-processes',
  'portals-rebalance',
  'portals-standby',
  'presence',
  'room-delivery',
  'room-isolation',
  'room-routing',
  'routing-faults',
  'send-routing',
  'server-hooks',
  'user-delivery-order',
  'users',
].map((name) => `test/${name}.test.ts`)
const onCluster = process.env.MESHKIT_TEST_REDIS === 'cluster'

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
    include: onCluster ? clusterSuites : ['test/**/*.test.ts'],
    // Type tests (*.test-d.ts): checked by tsc, not run; a type that stops inferring fails them.
    typecheck: { enabled: !onCluster, include: ['test/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 15_000,
    hookTimeout: 30_000,
  },
})
