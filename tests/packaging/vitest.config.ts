import { defineConfig } from 'vitest/config';
import { sharedTestConfig } from '../../vitest.shared';

// No workspace aliases: these tests resolve the packages as a user's bundler does, through node_modules to dist/.
export default defineConfig({ test: sharedTestConfig.test });
