import { defineConfig } from 'vitest/config';
import { sharedTestConfig } from '../../vitest.shared';
import { layerquantPluginModules } from './plugin-modules';

export default defineConfig({ ...sharedTestConfig, plugins: [layerquantPluginModules()] });
