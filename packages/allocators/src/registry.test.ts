import { readFileSync } from 'node:fs';
import { InvalidOptionError, configName, parseConfigList } from '@layerquant/core';
import { llama2PaperDir, shippedOraclesDir } from '@layerquant/fixtures';
import { describe, expect, it } from 'vitest';
import {
  ALLOCATOR_PLUGINS,
  allocateMethod,
  checkMethodBudget,
  createAllocatorRegistry,
  describeMethodOptions,
  expandMethodList,
  floorStop,
  kurtBoostAllocator,
  mxqAllocator,
  parseFnormCsv,
  parseKurtosisCsv,
  parseMethodName,
  parseSensitivityCsv,
  resolveOptions,
  sensiBoostAllocator,
  tablesNeededBy,
  type ModelStats,
} from './index.js';

const shipped: ModelStats = {
  fnorm: parseFnormCsv(readFileSync(`${shippedOraclesDir}/fnorm.csv`, 'utf8')),
  sensitivity: parseSensitivityCsv(readFileSync(`${shippedOraclesDir}/sensitivity.csv`, 'utf8')),
};

describe('allocator plug-ins', () => {
  it('every plug-in describes itself and every option (default valid, help given); ids are unique', () => {
    const registry = createAllocatorRegistry();
    expect(registry.ids()).toEqual(['uniform', 'mxq', 'sensiboost', 'kurtboost', 'ablation', 'sensi-milp', 'kurt-milp', 'kurt-scaled', 'head-prioritized', 'tail-prioritized', 'measured', 'kld']);
    for (const p of ALLOCATOR_PLUGINS) {
      expect(p.description.length, p.id).toBeGreaterThan(10);
      for (const d of p.options) expect(d.help.length, `${p.id} ${d.name}`).toBeGreaterThan(5);
      for (const name of p.nameOptions) expect(p.options.some((d) => d.name === name), `${p.id} ${name}`).toBe(true);
      expect(resolveOptions(p)).toEqual(Object.fromEntries(p.options.map((d) => [d.name, d.default])));
    }
  });

  it('parses grid names through the plug-ins\' options, and names them back the same way', () => {
    const boost = parseMethodName('sensiboost-3-0');
    expect(boost).toMatchObject({ id: 'sensiboost-3-0', allocator: 'sensiboost', options: { boostStop: 3, topM: 0 } });
    expect(describeMethodOptions(boost)).toBe('boost_stop=3 top_m=all');
    expect(parseMethodName('ablation-kurtboost-2-1')).toMatchObject({ id: 'ablation-kurtboost-2-1', options: { imitate: 'kurtboost', boostStop: 2, topM: 1, seed: 42 } });
    expect(describeMethodOptions(parseMethodName('ablation-kurtboost-2-1'))).toBe('imitates=kurtboost boost_stop=2 top_m=1');
    expect(parseMethodName('uniform').id).toBe('hqq');
    expect(parseMethodName('hqq').allocator).toBe('uniform');
    const milp = parseMethodName('sensi-milp-2:factor=3:ablation');
    expect(milp).toMatchObject({ id: 'sensi-milp-2:factor=3:ablation', allocator: 'sensi-milp', options: { topM: 2, factor: 3, ablation: true } });
    expect(parseMethodName(milp.id)).toEqual(milp);
    expect(parseMethodName('sensi-milp-1:factor=2').id).toBe('sensi-milp-1'); // the default is not written
    expect(parseMethodName('measured')).toMatchObject({ id: 'measured', allocator: 'measured' });
    expect(expandMethodList('sensiboost').map((m) => m.id)).toEqual(['sensiboost-2-1', 'sensiboost-2-0', 'sensiboost-3-1', 'sensiboost-3-0']);
    expect(expandMethodList('paper')).toHaveLength(18);
  });

  it('rejects bad names and values with the option named', () => {
    expect(() => parseMethodName('gptq')).toThrow(/option "--methods": "gptq" is not a method/);
    expect(() => parseMethodName('sensiboost-0-1')).toThrow(/boostStop.*at least 1/);
    expect(() => parseMethodName('sensiboost-2-1-4')).toThrow(/takes boostStop, topM in its name/);
    expect(() => parseMethodName('sensi-milp-1:factor=0')).toThrow(/factor.*above 0/);
    expect(() => parseMethodName('sensi-milp-1:bogus=1')).toThrow(/no option "bogus"/);
    expect(() => parseMethodName('ablation-gptq-2-1')).toThrow(/sensiboost, kurtboost/);
    expect(() => resolveOptions(ALLOCATOR_PLUGINS[1]!, { topM: 1 })).toThrow(InvalidOptionError);
  });

  it('says which tables a method reads', () => {
    expect(tablesNeededBy(expandMethodList('hqq,kurtboost-2-1'))).toEqual(['kurtosis']);
    expect(tablesNeededBy(expandMethodList('sensi-milp-1:ablation'))).toEqual(['fnorm']);
    expect(tablesNeededBy(expandMethodList('ablation-kurtboost-2-1,measured'))).toEqual(['kurtosis', 'measured']);
    expect(tablesNeededBy(expandMethodList('kld:rounds=0'))).toEqual(['kld']);
  });

  it('runs a method as the allocator itself does; the ablation takes the context seed unless its name sets one', () => {
    expect(allocateMethod(parseMethodName('sensiboost-2-1'), shipped, { budget: 2.25 })).toEqual(sensiBoostAllocator.allocate(shipped, { budget: 2.25, boostStop: 2, topM: 1 }));
    const viaPlugin = allocateMethod(parseMethodName('mxq'), shipped, { budget: 2.8 });
    const direct = mxqAllocator.allocate(shipped, { budget: 2.8 });
    expect(viaPlugin.matrices).toEqual(direct.matrices);
    expect(viaPlugin.options).toEqual(direct.options);
    const withSeed = allocateMethod(parseMethodName('ablation-sensiboost-2-1'), shipped, { budget: 3.25, seed: 7 });
    expect(withSeed.options.seed).toBe(7);
    expect(allocateMethod(parseMethodName('ablation-sensiboost-2-1:seed=9'), shipped, { budget: 3.25, seed: 7 }).options.seed).toBe(9);
  });

  it('any budget for the knapsacks; the stop plug-ins take the stop below when asked (never more memory)', () => {
    expect(() => checkMethodBudget(parseMethodName('sensiboost-2-1'), 2.8)).toThrow(/budget stops/);
    expect(() => checkMethodBudget(parseMethodName('sensiboost-2-1'), 2.8, undefined, undefined, true)).not.toThrow();
    expect(floorStop(2.8)).toBe(2.51);
    expect(floorStop(3.25)).toBe(3.25);
    const floored = allocateMethod(parseMethodName('hqq'), shipped, { budget: 3.8, floorToStop: true });
    expect(floored.budget).toBe(3.51);
    expect(floored.totals.bpp).toBeLessThanOrEqual(3.8);
    for (const id of ['mxq', 'sensi-milp-1', 'kurt-scaled', 'head-prioritized', 'tail-prioritized']) {
      const a = allocateMethod(parseMethodName(id), { ...shipped, kurtosis: undefined }, { budget: 3.07 });
      expect(a.totals.bpp, id).toBeLessThanOrEqual(3.07);
      expect(a.totals.bpp, id).toBeGreaterThan(3.0);
    }
  });

  it('a config ladder restricts every allocator to its configs; a boost climbs that ladder', () => {
    const ladder = parseConfigList('b2g64,b3g64,b4g32,b8g128');
    const mxq = allocateMethod(parseMethodName('mxq'), shipped, { budget: 3.4, configs: ladder });
    expect(new Set(mxq.matrices.map((m) => configName(m.config!)))).toEqual(new Set(['b2g64', 'b3g64', 'b4g32', 'b8g128'].filter((c) => mxq.matrices.some((m) => configName(m.config!) === c))));
    expect(mxq.matrices.every((m) => ['b2g64', 'b3g64', 'b4g32', 'b8g128'].includes(configName(m.config!)))).toBe(true);
    // b3g64 (3.25) boosted 2 stops on this ladder is b8g128 (b4g32 is one stop up).
    const boost = kurtBoostAllocator.allocate(shipped, { budget: 3.25, boostStop: 2, topM: 1, configs: ladder });
    expect(boost.baseConfig).toBe('b3g64');
    expect(boost.boostConfig).toBe('b8g128');
    expect(() => kurtBoostAllocator.allocate(shipped, { budget: 3.13, configs: ladder })).toThrow(/not a stop of the config ladder/);
    expect(() => allocateMethod(parseMethodName('mxq'), shipped, { budget: 3.4, configs: parseConfigList('b5g64') })).toThrow(/no row for b5g64/);
  });

  it('kurt-scaled scales kurtosis within each module as lm-quant-toolkit does (the 7B table\'s kurtosis_scaled column)', () => {
    const text = readFileSync(`${llama2PaperDir}/fnorm.csv`, 'utf8');
    const table = parseFnormCsv(text);
    const lines = text.trim().split('\n');
    const header = lines[0]!.split(',');
    const column = header.indexOf('kurtosis_scaled');
    const published = new Map(lines.slice(1).map((l) => l.split(',')).map((f) => [`${f[0]}.${f[1]}`, Number(f[column])]));
    const allocation = allocateMethod(parseMethodName('kurt-scaled'), { fnorm: table }, { budget: 4.25 });
    let cost = 0;
    for (const m of allocation.matrices) {
      const row = table.rows.find((r) => r.layer === m.layer && r.module === m.module && r.bits === m.config!.bits && r.groupSize === m.config!.groupSize)!;
      cost += row.fnorm * (1 + published.get(m.key)!);
    }
    expect((allocation as unknown as { solver: { objective: number } }).solver.objective).toBeCloseTo(cost, 6);
    void parseKurtosisCsv;
  });
});
