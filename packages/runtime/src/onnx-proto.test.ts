import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from './graph-builder.js';
import { OnnxDataType, ProtoWriter } from './onnx-proto.js';

describe('ProtoWriter', () => {
  it('writes varints, negative int64 and nested lengths as protobuf does', () => {
    // Known encodings: field 1 varint 150 -> 08 96 01; field 2 varint -1 -> 10 + ten bytes.
    expect([...new ProtoWriter().varint(1, 150).finish()]).toEqual([0x08, 0x96, 0x01]);
    expect([...new ProtoWriter().varint(2, -1).finish()]).toEqual([0x10, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1]);
    const inner = new ProtoWriter().string(2, 'testing');
    expect([...new ProtoWriter().message(3, inner).finish()]).toEqual([0x1a, 0x09, 0x12, 0x07, ...new TextEncoder().encode('testing')]);
  });
});

describe('GraphBuilder + onnxruntime', () => {
  it('serializes a graph that onnxruntime loads and runs with the expected numbers', async () => {
    const g = new GraphBuilder('smoke');
    const x = g.input('x', OnnxDataType.FLOAT, ['n', 3]);
    const w = g.floats([1, 2, 3, 4, 5, 6], [2, 3], 'w');
    const b = g.floats([0.5, -0.5], [2], 'b');
    const y = g.op('Gemm', [x, w, b], { transB: 1, alpha: { float: 2 } });
    const axes = g.op('ReduceSum', [y, g.ints([-1])], { keepdims: 1 }, 'sum');
    g.output('sum', OnnxDataType.FLOAT, ['n', 1]);
    g.op('Transpose', [y], { perm: [1, 0] }, 'yt');
    g.output('yt', OnnxDataType.FLOAT, [2, 'n']);
    expect(axes).toBe('sum');
    const session = await ort.InferenceSession.create(g.encode());
    const result = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 0, -1, 2, 2, 2]), [2, 3]) });
    // row 0: 2*[1*1+3*-1, 4-6] + b = [-4+0.5, -4-0.5]; row 1: 2*[12, 30] + b = [24.5, 59.5]
    expect([...(result.yt!.data as Float32Array)]).toEqual([-3.5, 24.5, -4.5, 59.5]);
    expect([...(result.sum!.data as Float32Array)]).toEqual([-8, 84]);
    expect(result.yt!.dims).toEqual([2, 2]);
    await session.release();
  });
});
