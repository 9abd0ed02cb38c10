# Generates python-repr.json: IEEE-754 bit patterns of doubles and Python's repr() of each, the oracle of
# csv.ts's formatNumber. Run: /usr/bin/python3 python-repr.py > python-repr.json
import json, math, random, struct, sys

random.seed(20261201)
values = [0.1, 0.2, 0.3, 1 / 3, 2 / 3, 1e-4, 1.5e-4, 9.999e-5, 1e-5, 1.234e-7, 5e-324, 2.2250738585072014e-308,
          1.7976931348623157e308, 1e15 + 0.5, 1e16, 1.5e16, 123456789012345.6, 0.0001, 0.00012, -0.00012, 3.14159,
          2.5, -2.5, 1e22, 1e21, 1e-7, 1e-6, 0.5, 4.35, 8.51, 2.13, 1.1, float('inf'), float('-inf'), -0.0]
for _ in range(400):
    # random magnitudes across the whole range, and random bit patterns
    values.append(random.uniform(-1, 1) * 10 ** random.randint(-12, 20))
for _ in range(200):
    bits = random.getrandbits(64)
    x = struct.unpack('<d', struct.pack('<Q', bits))[0]
    if not math.isnan(x):
        values.append(x)
rows = []
for x in values:
    if math.isfinite(x) and x == int(x) and not (x == 0 and math.copysign(1, x) < 0):
        continue  # integral values: written as integers by formatNumber (tested on their own)
    rows.append([struct.pack('>d', x).hex(), repr(x)])
sys.stdout.write('{"generator": "python-repr.py", "python": %s, "rows": [\n' % json.dumps(sys.version.split()[0]))
sys.stdout.write(',\n'.join(json.dumps(r) for r in rows))
sys.stdout.write('\n]}\n')
