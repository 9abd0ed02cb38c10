declare module 'virtual:layerquant-plugins' {
  import type { AllocatorPlugin } from '@layerquant/allocators';
  /** The default exports of the LAYERQUANT_PLUGINS modules (`{ allocators?, quantizers?, metrics? }`). */
  const modules: readonly { readonly allocators?: readonly AllocatorPlugin[] }[];
  export default modules;
}
