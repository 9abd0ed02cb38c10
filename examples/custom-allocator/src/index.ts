import { InfeasibleBudgetError, PAPER_CONFIGS, allocationTotals, bitsPerWeight, configName, parseConfigName, type MatrixAllocation, type QuantConfig } from '@layerquant/core';
import { definePlugin, matricesOf, type AllocatorPlugin } from '@layerquant/allocators';

/** Bits per weight of llama.cpp's Q4_K (256-weight super-blocks: 4-bit codes, 6-bit scales and mins per 32). */
export const Q4_K_BPW = 4.5;
/** Bits per weight of llama.cpp's Q6_K (6-bit codes, 8-bit scales per 16, one fp16 scale per 256). */
export const Q6_K_BPW = 6.5625;

/**
 * llama.cpp's "use more bits" rule of Q4_K_M (src/llama-quant.cpp): attn_v and ffn_down of layer i of n get Q6_K
 * when i < n/8, or i >= 7n/8, or (i - n/8) % 3 == 2 (integer n/8, as llama.cpp computes it); every other matrix
 * gets Q4_K. A fixed rule of layer position: it reads no statistics.
 */
export function usesMoreBits(layer: number, layers: number): boolean {
  const eighth = Math.floor(layers / 8);
  return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

/** The ladder config whose paper bits per weight is nearest `bpw` (ties: the cheaper), among `configs`. */
function nearest(configs: readonly QuantConfig[], bpw: number): QuantConfig {
  return [...configs].sort((a, b) => Math.abs(bitsPerWeight(a) - bpw) - Math.abs(bitsPerWeight(b) - bpw) || bitsPerWeight(a) - bitsPerWeight(b))[0]!;
}

/**
 * Q4_K_M on our config ladder. llama.cpp's K-quants are not our configs, so each is mapped to the ladder config of
 * nearest paper bits per weight: Q4_K (4.5 bpw) -> b4g32 (4.51), Q6_K (6.5625) -> b8g128 on the paper's ladder
 * (8.13: there is no 5- or 6-bit config in it) or b6g32 (6.51) when `--configs` offers one. `--base` and `--boost`
 * name other configs. llama.cpp's Q6_K for output.weight does not apply: the LM head is not quantized here.
 */
export const q4kmPlugin: AllocatorPlugin = definePlugin({
  id: 'q4-k-m',
  label: 'Q4_K_M rule',
  description: "llama.cpp's Q4_K_M layer-position rule: v_proj and down_proj of the first and last eighth and every third layer between get more bits",
  budget: 'any',
  options: [
    { name: 'base', flag: 'base', type: 'config', default: '', help: 'config of every other matrix (default: the ladder config nearest Q4_K, 4.5 bpw)' },
    { name: 'boost', flag: 'boost', type: 'config', default: '', help: 'config of the chosen v_proj/down_proj (default: the ladder config nearest Q6_K, 6.56 bpw)' },
  ],
  nameOptions: [],
  tablesNeeded: () => [],
  allocate(stats, options, context) {
    const configs = context.configs ?? PAPER_CONFIGS;
    const pick = (name: string, bpw: number): QuantConfig => (name ? parseConfigName(name) : nearest(configs, bpw));
    const base = pick(String(options.base ?? ''), Q4_K_BPW);
    const boost = pick(String(options.boost ?? ''), Q6_K_BPW);
    const matrices = matricesOf(stats);
    const layers = Math.max(...matrices.map((m) => m.layer)) + 1;
    const allocated: MatrixAllocation[] = matrices.map((m) => {
      const more = (m.module === 'self_attn.v_proj' || m.module === 'mlp.down_proj') && usesMoreBits(m.layer, layers);
      return Object.freeze({ ...m, config: more ? boost : base });
    });
    const totals = allocationTotals(allocated);
    // A fixed rule cannot shrink to a budget: below its own size it refuses, naming the budget it needs.
    if (totals.bpp > context.budget + 1e-12) throw new InfeasibleBudgetError(context.budget, Math.ceil(totals.bpp * 1000) / 1000);
    return Object.freeze({
      method: 'q4-k-m',
      options: Object.freeze({ base: configName(base), boost: configName(boost) }),
      budget: context.budget,
      matrices: Object.freeze(allocated),
      totals,
    });
  },
});

/** What `--plugin` loads: `layerquant allocate --plugin @layerquant/example-custom-allocator --method q4-k-m ...`. */
export default { allocators: [q4kmPlugin] };
