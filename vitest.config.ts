import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // worker-thread tests start many threads; on a 2-core machine run files one at a time
    fileParallelism: false,
  },
});
