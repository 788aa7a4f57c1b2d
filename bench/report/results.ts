/** Where a run's result goes: the table on stdout (stderr under --json), the JSON, and bench/results/. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** bench/results/ (results are committed; smoke-*.json are git-ignored there). */
export const RESULTS_DIR = resolve(import.meta.dir, "../results");

/**
 * bench/results/<suite->date.json and <suite->latest.json; smoke runs write smoke-*.json
 * (git-ignored). `suite` is "" for the redis suite (the main table), else the suite's name.
 */
export function writeResults(result: { date: string }, smoke: boolean, suite = ""): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const prefix = `${smoke ? "smoke-" : ""}${suite ? `${suite}-` : ""}`;
  const body = `${JSON.stringify(result, null, 2)}\n`;
  const dated = join(RESULTS_DIR, `${prefix}${result.date.replace(/:/g, "-").replace(/\.\d+Z$/, "Z")}.json`);
  writeFileSync(dated, body);
  writeFileSync(join(RESULTS_DIR, `${prefix}latest.json`), body);
  process.stderr.write(`wrote ${dated} and ${prefix}latest.json\n`);
}

export interface Report<R extends { date: string }> {
  /** Header, table and notes as printed (starts with a newline). */
  text: string;
  /** The table as Markdown, printed after the text under --markdown. */
  markdown: string;
  /** What goes to stdout under --json and into bench/results/. */
  result: R;
}

/**
 * Prints a finished run and writes its result file: the text (and the Markdown table under
 * --markdown) to stdout, or to stderr under --json, which puts the JSON alone on stdout.
 */
export function publish<R extends { date: string }>(report: Report<R>, opts: { json: boolean; markdown: boolean; smoke: boolean }, suite = ""): void {
  const out = opts.json ? process.stderr : process.stdout;
  out.write(report.text);
  if (opts.markdown) out.write(`\n${report.markdown}\n`);
  if (opts.json) process.stdout.write(`${JSON.stringify(report.result, null, 2)}\n`);
  writeResults(report.result, opts.smoke, suite);
}
