import {
  OnnxDataType,
  encodeModel,
  type OnnxAttributeValue,
  type OnnxDataTypeValue,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
  type TensorData,
} from './onnx-proto.js';

/** The default-domain opset the graphs use. */
export const ONNX_OPSET = 17;

/**
 * Builds an ONNX graph node by node. Value names are generated (`name_3`) unless given.
 * Constants become initializers; the result serializes with `toModel()` / `encode()`.
 */
export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  private counter = 0;
  private readonly names = new Set<string>();
  /** Operator domains other than the default one that nodes use (opset version 1 each, e.g. com.microsoft). */
  private readonly domains = new Set<string>();

  constructor(readonly name: string) {}

  private fresh(hint: string): string {
    let name: string;
    do name = `${hint}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new RangeError(`graph value "${name}" is defined twice`);
    this.names.add(name);
    return name;
  }

  input(name: string, dataType: OnnxDataTypeValue, dims: readonly (number | string)[]): string {
    this.inputs.push({ name: this.claim(name), dataType, dims });
    return name;
  }

  output(name: string, dataType: OnnxDataTypeValue, dims: readonly (number | string)[]): void {
    this.outputs.push({ name, dataType, dims });
  }

  initializer(name: string, dataType: OnnxDataTypeValue, dims: readonly number[], data: TensorData): string {
    this.initializers.push({ name: this.claim(name), dataType, dims, data });
    return name;
  }

  /** A float32 constant (scalar when dims is []). */
  floats(values: readonly number[] | Float32Array, dims: readonly number[] = [values.length], hint = 'const'): string {
    return this.initializer(this.fresh(hint), OnnxDataType.FLOAT, dims, Float32Array.from(values));
  }

  /** An int64 constant (1-D unless dims says otherwise). */
  ints(values: readonly number[], dims: readonly number[] = [values.length], hint = 'ints'): string {
    return this.initializer(this.fresh(hint), OnnxDataType.INT64, dims, BigInt64Array.from(values.map((v) => BigInt(v))));
  }

  /** Adds a node; returns its output names (`count` generated, or the names given). */
  node(
    opType: string,
    inputs: readonly string[],
    attributes: Readonly<Record<string, OnnxAttributeValue>> = {},
    outputs: number | readonly string[] = 1,
    domain = '',
    name?: string,
  ): string[] {
    const outs = typeof outputs === 'number'
      ? Array.from({ length: outputs }, () => this.claim(this.fresh(opType.toLowerCase())))
      : outputs.map((o) => this.claim(o));
    this.nodes.push({ opType, inputs, outputs: outs, attributes, ...(domain ? { domain } : {}), ...(name ? { name } : {}) });
    if (domain) this.domains.add(domain);
    return outs;
  }

  /** Adds a single-output node and returns its output name (named `output` when given). */
  op(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, OnnxAttributeValue>> = {}, output?: string): string {
    return this.node(opType, inputs, attributes, output === undefined ? 1 : [output])[0]!;
  }

  toModel(): OnnxModel {
    return {
      graph: { name: this.name, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs },
      opsets: { '': ONNX_OPSET, ...Object.fromEntries([...this.domains].map((d) => [d, 1])) },
    };
  }

  encode(): Uint8Array {
    return encodeModel(this.toModel());
  }
}
