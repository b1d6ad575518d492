import { defineConfig } from 'vitest/config';

// Tests that start emulators and onnxruntime sessions need real time on a 2-core machine; files run
// in parallel forks, each with its own emulators on port 0.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/bench/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ['test/global-temp.ts'],
    pool: 'forks',
    maxWorkers: 2,
    env: {
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  },
});
