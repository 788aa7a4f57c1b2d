/** Results: medians and ratios, and fixed-width text / Markdown tables. */

export type Unit = "req/s" | "Gbit/s" | "KiB/session";

/** All samples of one row for one contender. */
export interface Cell {
  row: string;
  title: string;
  unit: Unit;
  contender: string;
  samples: number[];
  p50Samples: number[];
  errors: string[];
  /** The proxy's CPU per sample, when the suite measures it (the redis suite, Redis rows, not direct). */
  cpu?: CpuSample[];
}

/** The proxy's CPU in one sample: µs per request, user and system apart, and the ticks it came from. */
export interface CpuSample {
  userUs: number;
  systemUs: number;
  /** user + system clock ticks of the whole sample: the resolution is ±1 of these. */
  ticks: number;
}

/** Medians over rounds of the proxy's CPU per request, every sample, and the ratio to HAProxy's median. */
export interface CpuLine {
  /** user + system µs per request. */
  median: number | null;
  min: number | null;
  max: number | null;
  userMedian: number | null;
  systemMedian: number | null;
  /** median ÷ HAProxy's median in the same row (lower is better). */
  vsHaproxy: number | null;
  usPerRequest: number[];
  userUsPerRequest: number[];
  systemUsPerRequest: number[];
  ticks: number[];
}

export interface Line {
  row: string;
  title: string;
  unit: Unit;
  contender: string;
  median: number | null;
  min: number | null;
  max: number | null;
  p50ms: number | null;
  vsDirect: number | null;
  vsHaproxy: number | null;
  samples: number[];
  errors: string[];
  /** Only where the cell measured CPU. */
  cpu?: CpuLine;
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `a / b` of two medians; null when either is missing (or b is 0). */
export const ratioOf = (a: number | null, b: number | null): number | null => (a !== null && b ? a / b : null);

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const total = (s: CpuSample) => s.userUs + s.systemUs;

/** Medians per cell and ratios against direct and HAProxy of the same row (CPU too, where measured). */
export function summarize(cells: Cell[]): Line[] {
  const med = (row: string, contender: string) => median(cells.find((c) => c.row === row && c.contender === contender)?.samples ?? []);
  const cpuMed = (row: string, contender: string) => median(cells.find((c) => c.row === row && c.contender === contender)?.cpu?.map(total) ?? []);
  return cells.map((c) => {
    const m = median(c.samples);
    const cpu = c.cpu === undefined ? {} : { cpu: cpuLine(c.cpu, cpuMed(c.row, "haproxy")) };
    return {
      row: c.row,
      title: c.title,
      unit: c.unit,
      contender: c.contender,
      median: m,
      min: c.samples.length ? Math.min(...c.samples) : null,
      max: c.samples.length ? Math.max(...c.samples) : null,
      p50ms: median(c.p50Samples.filter(Number.isFinite)),
      vsDirect: ratioOf(m, med(c.row, "direct")),
      vsHaproxy: ratioOf(m, med(c.row, "haproxy")),
      samples: c.samples,
      errors: c.errors,
      ...cpu,
    };
  });
}

function cpuLine(samples: CpuSample[], haproxy: number | null): CpuLine {
  const us = samples.map((s) => round3(total(s)));
  const m = median(us);
  return {
    median: m,
    min: us.length ? Math.min(...us) : null,
    max: us.length ? Math.max(...us) : null,
    userMedian: median(samples.map((s) => round3(s.userUs))),
    systemMedian: median(samples.map((s) => round3(s.systemUs))),
    vsHaproxy: ratioOf(m, haproxy),
    usPerRequest: us.map(round3),
    userUsPerRequest: samples.map((s) => round3(s.userUs)),
    systemUsPerRequest: samples.map((s) => round3(s.systemUs)),
    ticks: samples.map((s) => s.ticks),
  };
}

/** `contender`'s ratio to HAProxy per row, to three decimals (the JSON's `ratios`). */
export function ratiosTo(lines: Line[], contender: string): Record<string, number | null> {
  return Object.fromEntries(
    lines.filter((l) => l.contender === contender).map((l) => [l.row, l.vsHaproxy === null ? null : Math.round(l.vsHaproxy * 1000) / 1000]),
  );
}

/** One line per cell that had errors, first error only (all are in the JSON). */
export function errorNotes(lines: Line[]): string {
  return lines
    .filter((l) => l.errors.length > 0)
    .map((l) => `${l.median === null ? "FAILED" : "partly failed"}: ${l.contender} / ${l.title} (${l.errors.length}x): ${l.errors[0]}`)
    .join("\n");
}

/** A table to print: its head, its rows, how many columns (from the left) are text, and groups. */
export interface Table {
  head: string[];
  rows: string[][];
  /** The first `text` columns are padded on the right, the others (numbers) on the left. */
  text: number;
  /** Per row, its group: a blank line goes between groups in the text form. */
  groups?: string[];
}

/** Fixed-width text: numeric columns right-aligned, a dashed rule under the head. */
export function textTable(table: Table): string {
  const { head, rows, text, groups } = table;
  const widths = head.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < text ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [fmt(head), widths.map((w) => "-".repeat(w)).join("  ")];
  let previous = "";
  for (const [i, r] of rows.entries()) {
    const group = groups?.[i] ?? "";
    if (group !== previous && previous !== "") out.push("");
    previous = group;
    out.push(fmt(r));
  }
  return out.join("\n");
}

export function markdownTable(table: Table): string {
  const { head, rows, text } = table;
  const out = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < text ? "---" : "---:")).join("|")}|`];
  for (const r of rows) out.push(`| ${r.join(" | ")} |`);
  return out.join("\n");
}

/** req/s with thousands separators; "-" for none. */
export const fmtRps = (x: number | null): string => (x === null ? "-" : Math.round(x).toLocaleString("en-US"));
