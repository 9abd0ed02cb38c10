export interface WasmKernelSource { readonly wat: string; readonly generated: string; readonly constant: string }
export const KERNELS: readonly WasmKernelSource[];
export function assembleKernel(wat?: string): Promise<Buffer>;
export function generatedSource(bytes: Buffer, kernel?: WasmKernelSource): string;
