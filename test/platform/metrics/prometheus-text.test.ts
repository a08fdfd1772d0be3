import { describe, expect, test } from 'vitest';
import { parseExposition } from './prometheus-text.ts';

/** The strict exposition reader the /metrics tests rely on: it must refuse what Prometheus would. */
describe('parseExposition', () => {
  test('reads families, types, help, escaped label values and special float values', () => {
    const families = parseExposition(
      [
        '# HELP requests_total Requests served, with a \\\\ and a \\n in the help',
        '# TYPE requests_total counter',
        'requests_total{path="/a\\"b\\\\c\\nd",code="200"} 3',
        '# TYPE lag gauge',
        'lag NaN',
        'lag_free{x="y"} +Inf',
        '# TYPE latency histogram',
        'latency_bucket{le="0.1"} 1',
        'latency_bucket{le="+Inf"} 2',
        'latency_sum 0.3',
        'latency_count 2',
        '',
      ].join('\n'),
    );
    const requests = families.get('requests_total');
    expect(requests?.type).toBe('counter');
    expect(requests?.help).toBe('Requests served, with a \\ and a \n in the help');
    expect(requests?.samples).toEqual([
      { name: 'requests_total', labels: { path: '/a"b\\c\nd', code: '200' }, value: 3 },
    ]);
    expect(families.get('lag')?.samples[0]?.value).toBeNaN();
    expect(families.get('lag_free')?.type).toBe('untyped');
    expect(families.get('latency')?.samples.map((s) => s.name)).toEqual([
      'latency_bucket',
      'latency_bucket',
      'latency_sum',
      'latency_count',
    ]);
  });

  test.for([
    ['a missing final line feed', '# TYPE a gauge\na 1'],
    ['a duplicate series', '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n'],
    ['a family split in two groups', '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="2"} 1\n'],
    ['a TYPE after its samples', 'a 1\n# TYPE a gauge\n'],
    ['a second TYPE', '# TYPE a gauge\n# TYPE a counter\n'],
    ['an unknown type', '# TYPE a thing\n'],
    ['a negative counter', '# TYPE a counter\na -1\n'],
    ['a malformed value', '# TYPE a gauge\na 1,5\n'],
    ['an unterminated label value', '# TYPE a gauge\na{x="1} 1\n'],
    ['an invalid escape', '# TYPE a gauge\na{x="\\t"} 1\n'],
    ['a label given twice', '# TYPE a gauge\na{x="1",x="2"} 1\n'],
    ['a reserved label name', '# TYPE a gauge\na{__name__="b"} 1\n'],
    ['an invalid metric name', '1a 1\n'],
    ['a histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ['a histogram whose +Inf differs from _count', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n'],
    [
      'buckets that are not cumulative',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    ],
    ['a histogram without _sum', '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n'],
    ['a bucket without le', '# TYPE h histogram\nh_bucket 1\n'],
  ] as const)('refuses %s', ([, text]) => {
    expect(() => parseExposition(text)).toThrow();
  });
});
