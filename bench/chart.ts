// A hand-written SVG bar chart of the bench ratios (celeriac / peer): one row per ratio on a log scale
// centred on 1×, a bar from 1× to the value, and the target as a dashed mark. Green bars meet their
// target, red ones do not, grey ones have none.

export interface ChartRow {
  /** Rows are grouped under their section's heading (e.g. `vs BullMQ`), in the order given. */
  section: string;
  label: string;
  value: number;
  /** The target, with the direction that meets it. */
  target?: { op: '>=' | '<='; value: number };
  /** How the target is written next to its mark (default `≥2×`). */
  targetLabel?: string;
  /** How the value is written at the end of its bar (default `2.31×`). */
  valueLabel?: string;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function formatRatio(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v >= 100) return `${v.toFixed(0)}×`;
  if (v >= 10) return `${v.toFixed(1)}×`;
  return `${v.toFixed(2)}×`;
}

export function meets(value: number, target: { op: '>=' | '<='; value: number }): boolean {
  return target.op === '>=' ? value >= target.value : value <= target.value;
}

export function ratiosSvg(title: string, subtitle: string, rows: readonly ChartRow[]): string {
  const finite = rows.filter((r) => Number.isFinite(r.value) && r.value > 0);
  const values = finite.flatMap((r) => [r.value, ...(r.target ? [r.target.value] : [])]).concat([1]);
  const lo = Math.floor(Math.log10(Math.min(...values) / 1.3));
  const hi = Math.ceil(Math.log10(Math.max(...values) * 1.3));
  // One line per row, plus one per section heading.
  const lines: ({ heading: string } | { row: ChartRow })[] = [];
  for (const r of rows) {
    const prev = lines.length ? lines[lines.length - 1] : undefined;
    const prevSection = prev && 'row' in prev ? prev.row.section : undefined;
    if (prevSection !== r.section) lines.push({ heading: r.section });
    lines.push({ row: r });
  }
  const width = 920;
  const labelW = 290;
  const plotL = labelW + 20;
  const plotR = width - 110;
  const top = 78;
  const rowH = 28;
  const axisY = top + lines.length * rowH + 6;
  const height = axisY + 80;
  const x = (v: number): number => plotL + ((Math.log10(v) - lo) / (hi - lo)) * (plotR - plotL);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="13">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="20" y="28" font-size="17" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="20" y="50" fill="#555" font-size="12">${esc(subtitle)}</text>`);
  // Grid: 1, 2, 5 per decade; 1× (parity) darker.
  for (let d = lo; d <= hi; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (Math.log10(v) > hi + 1e-9) continue;
      const gx = x(v).toFixed(1);
      out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${axisY}" stroke="${v === 1 ? '#333' : '#e3e3e3'}" stroke-width="${v === 1 ? 1.5 : 1}"/>`);
      out.push(`<text x="${gx}" y="${axisY + 16}" text-anchor="middle" fill="#555" font-size="11">${esc(`${Number(v.toPrecision(1))}×`)}</text>`);
    }
  }
  out.push(`<text x="${((plotL + plotR) / 2).toFixed(0)}" y="${axisY + 36}" text-anchor="middle" fill="#555" font-size="12">celeriac / peer, log scale; bars start at parity (1×)</text>`);
  lines.forEach((line, i) => {
    const cy = top + i * rowH + rowH / 2;
    if ('heading' in line) {
      out.push(`<text x="20" y="${(cy + 5).toFixed(1)}" font-weight="bold" fill="#333">${esc(line.heading)}</text>`);
      return;
    }
    const r = line.row;
    out.push(`<text x="${labelW}" y="${(cy + 4).toFixed(1)}" text-anchor="end">${esc(r.label)}</text>`);
    if (!(Number.isFinite(r.value) && r.value > 0)) {
      out.push(`<text x="${width - 20}" y="${(cy + 4).toFixed(1)}" text-anchor="end" fill="#999">not measured</text>`);
      return;
    }
    const x1 = x(1);
    const xv = x(r.value);
    const colour = r.target ? (meets(r.value, r.target) ? '#2e9d4a' : '#d9453b') : '#8c8c8c';
    out.push(`<rect x="${Math.min(x1, xv).toFixed(1)}" y="${(cy - 8).toFixed(1)}" width="${Math.max(1.5, Math.abs(xv - x1)).toFixed(1)}" height="16" fill="${colour}" rx="2"/>`);
    out.push(`<text x="${width - 20}" y="${(cy + 4).toFixed(1)}" text-anchor="end" font-weight="bold" fill="${colour}">${esc(r.valueLabel ?? formatRatio(r.value))}</text>`);
    if (r.target) {
      const tx = x(r.target.value);
      out.push(`<line x1="${tx.toFixed(1)}" y1="${(cy - 12).toFixed(1)}" x2="${tx.toFixed(1)}" y2="${(cy + 12).toFixed(1)}" stroke="#1f4fb8" stroke-width="2" stroke-dasharray="3 2"/>`);
      out.push(`<text x="${(tx + 4).toFixed(1)}" y="${(cy + 12).toFixed(1)}" fill="#1f4fb8" font-size="10">${esc(r.targetLabel ?? `${r.target.op === '>=' ? '≥' : '≤'}${r.target.value}×`)}</text>`);
    }
  });
  const ly = height - 14;
  out.push(`<rect x="20" y="${ly - 10}" width="12" height="12" fill="#2e9d4a"/><text x="38" y="${ly}">meets its target</text>`);
  out.push(`<rect x="160" y="${ly - 10}" width="12" height="12" fill="#d9453b"/><text x="178" y="${ly}">misses its target</text>`);
  out.push(`<rect x="305" y="${ly - 10}" width="12" height="12" fill="#8c8c8c"/><text x="323" y="${ly}">no target</text>`);
  out.push(`<line x1="415" y1="${ly - 11}" x2="415" y2="${ly + 2}" stroke="#1f4fb8" stroke-width="2" stroke-dasharray="3 2"/><text x="423" y="${ly}">target</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
