import { defineConfig } from 'vitest/config';

// The examples' own test run (`pnpm example test`): the packages as a user gets them, by name
// through node_modules, without the repository's aliases to their sources.
export default defineConfig({ test: { include: ['*.test.ts'], testTimeout: 30_000 } });
