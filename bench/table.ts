/** Results: medians and ratios, the header, the text/Markdown table and the JSON file. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

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
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Medians per cell and ratios against direct and HAProxy of the same row. */
export function summarize(cells: Cell[]): Line[] {
  const med = (row: string, contender: string) =>
    median(cells.find((c) => c.row === row && c.contender === contender)?.samples ?? []);
  return cells.map((c) => {
    const m = median(c.samples);
    const ratio = (ref: number | null) => (m !== null && ref ? m / ref : null);
    return {
      row: c.row,
      title: c.title,
      unit: c.unit,
      contender: c.contender,
      median: m,
      min: c.samples.length ? Math.min(...c.samples) : null,
      max: c.samples.length ? Math.max(...c.samples) : null,
      p50ms: median(c.p50Samples.filter(Number.isFinite)),
      vsDirect: ratio(med(c.row, "direct")),
      vsHaproxy: ratio(med(c.row, "haproxy")),
      samples: c.samples,
      errors: c.errors,
    };
  });
}

function fmtValue(x: number | null, unit: Unit): string {
  if (x === null) return "-";
  if (unit === "req/s") return Math.round(x).toLocaleString("en-US");
  if (unit === "Gbit/s") return x.toFixed(2);
  return x.toFixed(1);
}

const fmtRatio = (x: number | null) => (x === null ? "-" : `${x.toFixed(2)}x`);

const COLUMNS = ["row", "contender", "median", "min..max", "p50 ms", "vs direct", "vs HAProxy"];

function cellsOf(l: Line): string[] {
  const value = l.median === null ? "FAILED" : `${fmtValue(l.median, l.unit)} ${l.unit}`;
  const range = l.min === null ? "-" : `${fmtValue(l.min, l.unit)}..${fmtValue(l.max, l.unit)}`;
  return [l.title, l.contender, value, range, l.p50ms === null ? "-" : l.p50ms.toFixed(3), fmtRatio(l.vsDirect), fmtRatio(l.vsHaproxy)];
}

/** Fixed-width text table; numeric columns right-aligned. */
export function textTable(lines: Line[]): string {
  const rows = [COLUMNS, ...lines.map(cellsOf)];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const out = [fmt(rows[0]!), widths.map((w) => "-".repeat(w)).join("  ")];
  let prev = "";
  for (const [i, r] of rows.slice(1).entries()) {
    if (lines[i]!.row !== prev && prev !== "") out.push("");
    prev = lines[i]!.row;
    out.push(fmt(r));
  }
  return out.join("\n");
}

export function markdownTable(lines: Line[]): string {
  const out = [`| ${COLUMNS.join(" | ")} |`, `|${COLUMNS.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  for (const l of lines) out.push(`| ${cellsOf(l).join(" | ")} |`);
  return out.join("\n");
}

export const TABLE_NOTE =
  "median over rounds; ratios are median / median of direct or HAProxy in the same row " +
  "(higher is better for req/s and Gbit/s, lower is better for KiB/session).";

/** One line per cell that had errors, first error only (all are in the JSON). */
export function errorNotes(lines: Line[]): string {
  return lines
    .filter((l) => l.errors.length > 0)
    .map((l) => `${l.median === null ? "FAILED" : "partly failed"}: ${l.contender} / ${l.title} (${l.errors.length}x): ${l.errors[0]}`)
    .join("\n");
}

/**
 * bench/results/<suite->date.json and <suite->latest.json; smoke runs write smoke-*.json
 * (git-ignored). `suite` is "" for the main table, "backends" for the backends suite.
 */
export function writeResults(result: { date: string }, smoke: boolean, suite = ""): void {
  const dir = resolve(import.meta.dir, "results");
  mkdirSync(dir, { recursive: true });
  const prefix = `${smoke ? "smoke-" : ""}${suite ? `${suite}-` : ""}`;
  const body = `${JSON.stringify(result, null, 2)}\n`;
  const dated = join(dir, `${prefix}${result.date.replace(/:/g, "-").replace(/\.\d+Z$/, "Z")}.json`);
  writeFileSync(dated, body);
  writeFileSync(join(dir, `${prefix}latest.json`), body);
  process.stderr.write(`wrote ${dated} and ${prefix}latest.json\n`);
}
