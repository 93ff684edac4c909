import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    server: 'src/server/index.ts',
    client: 'src/client/index.ts',
    'mesh-server': 'src/compat/mesh/server.ts',
    'mesh-client': 'src/compat/mesh/client.ts',
    mesa: 'src/compat/mesa/index.ts',
  },
  format: ['esm', 'cjs'],
  // Members tagged @internal are for meshkit's own modules, not part of the published types.
  dts: { compilerOptions: { stripInternal: true } },
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  // \`import.meta.url\` in the CommonJS build (commandSync finds \`ws\` for its worker with it).
  shims: true,
})
