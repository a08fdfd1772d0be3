/** A dependency-free SVG line chart: throughput and p95 latency against concurrency, side by side. */

export interface Series {
  readonly label: string;
  readonly colour: string;
  readonly dashed?: boolean;
  /** [connections, value] pairs. */
  readonly points: readonly (readonly [number, number])[];
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
}

const WIDTH = 1000;
const HEIGHT = 450;
const PANEL_WIDTH = 400;
const PANEL_HEIGHT = 270;
const TOP = 85;
const LEFTS = [75, 565];

function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function format(value: number): string {
  if (value >= 10_000) return `${Math.round(value / 1000)}k`;
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 10) return String(Math.round(value));
  return value.toFixed(1);
}

function panel(left: number, spec: Panel, xs: readonly number[]): string {
  const values = spec.series.flatMap((series) => series.points.map(([, value]) => value)).filter(Number.isFinite);
  const yMax = niceMax(Math.max(...values, 0));
  const logs = xs.map((x) => Math.log2(x));
  const xMin = Math.min(...logs);
  const xMax = Math.max(...logs);
  const xOf = (connections: number) =>
    left + (xMax === xMin ? PANEL_WIDTH / 2 : ((Math.log2(connections) - xMin) / (xMax - xMin)) * PANEL_WIDTH);
  const yOf = (value: number) => TOP + PANEL_HEIGHT - (value / yMax) * PANEL_HEIGHT;
  const parts: string[] = [];
  parts.push(
    `<text x="${left + PANEL_WIDTH / 2}" y="${TOP - 14}" text-anchor="middle" font-size="14" font-weight="bold">${escape(spec.title)}</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const value = (yMax / 5) * i;
    const y = yOf(value);
    parts.push(`<line x1="${left}" y1="${y}" x2="${left + PANEL_WIDTH}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 8}" y="${y + 4}" text-anchor="end" font-size="11">${format(value)}</text>`);
  }
  for (const x of xs) {
    parts.push(`<line x1="${xOf(x)}" y1="${TOP}" x2="${xOf(x)}" y2="${TOP + PANEL_HEIGHT}" stroke="#eee"/>`);
    parts.push(`<text x="${xOf(x)}" y="${TOP + PANEL_HEIGHT + 18}" text-anchor="middle" font-size="11">${x}</text>`);
  }
  parts.push(
    `<text x="${left + PANEL_WIDTH / 2}" y="${TOP + PANEL_HEIGHT + 38}" text-anchor="middle" font-size="12">connections (log scale)</text>`,
  );
  parts.push(
    `<text transform="translate(${left - 50} ${TOP + PANEL_HEIGHT / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escape(spec.unit)}</text>`,
  );
  parts.push(
    `<rect x="${left}" y="${TOP}" width="${PANEL_WIDTH}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`,
  );
  for (const series of spec.series) {
    const points = series.points.filter(([, value]) => Number.isFinite(value));
    if (points.length === 0) continue;
    const path = points
      .map(([x, value], i) => `${i === 0 ? 'M' : 'L'}${xOf(x).toFixed(1)},${yOf(value).toFixed(1)}`)
      .join(' ');
    parts.push(
      `<path d="${path}" fill="none" stroke="${series.colour}" stroke-width="2.5"${series.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    for (const [x, value] of points) {
      parts.push(`<circle cx="${xOf(x).toFixed(1)}" cy="${yOf(value).toFixed(1)}" r="3.5" fill="${series.colour}"/>`);
    }
  }
  return parts.join('\n');
}

export function lineChart(options: {
  title: string;
  subtitle: string;
  connections: readonly number[];
  throughput: readonly Series[];
  p95: readonly Series[];
}): string {
  const legend = options.throughput
    .map((series, i) => {
      const x = 75 + i * 185;
      const y = HEIGHT - 22;
      return (
        `<line x1="${x}" y1="${y}" x2="${x + 26}" y2="${y}" stroke="${series.colour}" stroke-width="3"${series.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>` +
        `<text x="${x + 32}" y="${y + 4}" font-size="12">${escape(series.label)}</text>`
      );
    })
    .join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escape(options.title)}</text>`,
    `<text x="${WIDTH / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">${escape(options.subtitle)}</text>`,
    panel(
      LEFTS[0] ?? 75,
      { title: 'Throughput (2xx req/s, median of rounds)', unit: 'req/s', series: options.throughput },
      options.connections,
    ),
    panel(
      LEFTS[1] ?? 565,
      { title: 'p95 latency (ms, median of rounds)', unit: 'ms', series: options.p95 },
      options.connections,
    ),
    legend,
    '</svg>',
    '',
  ].join('\n');
}
