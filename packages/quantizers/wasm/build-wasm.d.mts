export function assembleKernel(): Promise<Buffer>;
export function generatedSource(bytes: Buffer): string;
