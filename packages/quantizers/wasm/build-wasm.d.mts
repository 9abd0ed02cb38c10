export interface WasmKernelSource { readonly wat: string; readonly generated: string; readonly constant: string; readonly shared?: boolean }
export const KERNELS: readonly WasmKernelSource[];
export function assembleKernel(wat?: string, options?: { shared?: boolean }): Promise<Buffer>;
export function generatedSource(kernel?: WasmKernelSource): Promise<string>;
