// `virtual:layerquant-plugins`: the notebook's --plugin. LAYERQUANT_PLUGINS (comma-separated paths or package
// names, as `layerquant --plugin` takes them) are imported into the page, and their allocators join the built-ins.
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { Plugin } from 'vite';

const ID = 'virtual:layerquant-plugins';
const RESOLVED = `\0${ID}`;

/** The module specifiers of LAYERQUANT_PLUGINS; paths resolve against the directory the command runs in. */
export function pluginSpecifiers(value = process.env.LAYERQUANT_PLUGINS ?? '', cwd = process.env.INIT_CWD ?? process.cwd()): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      if (!(s.startsWith('.') || isAbsolute(s))) return s;
      const path = resolve(cwd, s);
      if (!existsSync(path)) throw new Error(`LAYERQUANT_PLUGINS: no file ${path}; give the path of the plug-in's built .js module`);
      return path;
    });
}

export function layerquantPluginModules(specifiers = pluginSpecifiers()): Plugin {
  return {
    name: 'layerquant-plugin-modules',
    resolveId: (id) => (id === ID ? RESOLVED : undefined),
    load(id) {
      if (id !== RESOLVED) return undefined;
      const imports = specifiers.map((s, i) => `import * as plugin${i} from ${JSON.stringify(s)};`);
      const modules = specifiers.map((_, i) => `(plugin${i}.default ?? plugin${i})`);
      return `${imports.join('\n')}\nexport default [${modules.join(', ')}];\n`;
    },
  };
}
