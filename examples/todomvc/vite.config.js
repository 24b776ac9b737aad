import { defineConfig } from 'vite'

// The livesync server the dev server forwards the sync socket to (`make run` serves it on port 8000).
const livesync = process.env.LIVESYNC_URL ?? 'http://127.0.0.1:8000'

export default defineConfig({
  // Django serves the build at /demo/ (livesync_project/demo.py), so every asset URL starts there.
  base: '/demo/',
  build: {
    // LiveStore and Effect make each of the page, the leader worker and the shared worker ~550 kB; all three
    // are needed at boot, so splitting them would only add requests.
    chunkSizeWarningLimit: 1000,
  },
  server: {
    // The app opens ws://<its own host>/websocket; in development that is Vite, which passes it on.
    proxy: { '/websocket': { target: livesync, ws: true } },
  },
  // Module workers in the build too, as the dev server serves them and as LiveStore's own examples build them.
  worker: { format: 'es' },
  // wa-sqlite loads its .wasm relative to its own module, which the dev server's pre-bundling would move
  // (LiveStore's adapter-web README asks for this exclusion).
  optimizeDeps: { exclude: ['@livestore/wa-sqlite'] },
})
