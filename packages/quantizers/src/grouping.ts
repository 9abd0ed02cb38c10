import { InvalidOptionError, ShapeMismatchError, type QuantConfig, type WeightTensor } from '@layerquant/core';

/** How a matrix splits into quantization groups. */
export interface GroupLayout {
  readonly rows: number;
  readonly columns: number;
  readonly groupSize: number;
  readonly groupCount: number;
  readonly axis: 0 | 1;
}

/** The [rows, columns] of a 2-D weight, or a ShapeMismatchError naming the tensor. */
export function matrixShape(weight: Pick<WeightTensor, 'name' | 'shape' | 'data'>): [number, number] {
  if (weight.shape.length !== 2) {
    throw new ShapeMismatchError(weight.name, `has shape [${weight.shape.join(', ')}]; only 2-D linear weights can be quantized`);
  }
  const [rows, columns] = weight.shape as [number, number];
  if (rows * columns !== weight.data.length) {
    throw new ShapeMismatchError(weight.name, `shape [${rows}, ${columns}] needs ${rows * columns} values but the data has ${weight.data.length}`);
  }
  return [rows, columns];
}

/** The usual group sizes that divide `columns`, as a hint (" (e.g. 32, 64)"), or "" where none does. */
function dividingGroupSizes(columns: number): string {
  const sizes = [16, 32, 64, 128, 256].filter((g) => columns % g === 0);
  return sizes.length > 0 ? ` (e.g. ${sizes.slice(-3).join(', ')})` : '';
}

/**
 * Validates a config against a matrix shape. Axis 1 (upstream HQQ): groups of `groupSize` contiguous values along
 * the input dimension, so the group size must divide the row length. Axis 0 (`W.reshape(g, -1)`): the group size
 * must divide the element count.
 */
export function groupLayout(name: string, shape: readonly [number, number], config: QuantConfig): GroupLayout {
  const [rows, columns] = shape;
  const count = rows * columns;
  if (config.axis === 1 && columns % config.groupSize !== 0) {
    throw new InvalidOptionError(
      'groupSize',
      `${config.groupSize} does not divide the row length ${columns} of tensor "${name}"; pick a group size that divides it${dividingGroupSizes(columns)}`,
    );
  }
  if (config.axis === 0 && count % config.groupSize !== 0) {
    throw new InvalidOptionError('groupSize', `${config.groupSize} does not divide the ${count} elements of tensor "${name}"`);
  }
  return Object.freeze({ rows, columns, groupSize: config.groupSize, groupCount: count / config.groupSize, axis: config.axis });
}

/**
 * The weights arranged group after group (`groupCount` runs of `groupSize` values). Axis 1 is the row-major data
 * itself; axis 0 groups are the columns of `W.reshape(g, -1)`, gathered here so every solver sees contiguous groups.
 */
export function groupedValues<T extends Float32Array | Uint8Array>(data: T, layout: GroupLayout): T {
  if (layout.axis === 1) return data;
  const { groupSize, groupCount } = layout;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  for (let r = 0; r < groupSize; r++) {
    const base = r * groupCount;
    for (let c = 0; c < groupCount; c++) out[c * groupSize + r] = data[base + c]!;
  }
  return out;
}

/** Inverse of groupedValues: group-major values back to the row-major matrix order. */
export function ungroupValues<T extends Float32Array | Uint8Array>(grouped: T, layout: GroupLayout): T {
  if (layout.axis === 1) return grouped;
  const { groupSize, groupCount } = layout;
  const out = new (grouped.constructor as new (n: number) => T)(grouped.length);
  for (let r = 0; r < groupSize; r++) {
    const base = r * groupCount;
    for (let c = 0; c < groupCount; c++) out[base + c] = grouped[c * groupSize + r]!;
  }
  return out;
}
