/**
 * Reading a /metrics scrape in tests with real parsers, not with our own code:
 *
 * - `parse-prometheus-text-format` (npm; a port of the official Python client's parser, the
 *   only text-format parser on npm) reads every sample line strictly: names, label escaping,
 *   values. Its grouping of histograms keeps one label set only, so histogram TYPE lines are
 *   dropped before parsing: their `_bucket`, `_sum` and `_count` lines are then read as plain
 *   samples, labels and all.
 * - `promtool check metrics` (Prometheus's own Go parser and linter, Debian package
 *   `prometheus`, installed by .ci/run) checks the whole exposition, histograms and naming
 *   conventions included, where it is installed.
 */
// @ts-expect-error: the package ships no types; `parse` below gives its result one.
import parsePrometheusTextFormat from "parse-prometheus-text-format";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string> }[];
}

export class Scrape {
  constructor(
    readonly samples: Sample[],
    /** Family name → TYPE as written (`counter`, `gauge`, `histogram`). */
    readonly types: Map<string, string>,
  ) {}

  /** The value of the one sample with exactly these labels; throws when there is none or several. */
  get(name: string, labels: Record<string, string> = {}): number {
    const found = this.all(name, labels);
    if (found.length !== 1) {
      const known = this.samples.filter((s) => s.name === name).map((s) => JSON.stringify(s.labels));
      throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)}; there are:\n${known.join("\n")}`);
    }
    return found[0]!.value;
  }

  /** Samples of `name` whose labels include `labels`. */
  all(name: string, labels: Record<string, string> = {}, exact = true): Sample[] {
    return this.samples.filter((sample) => {
      if (sample.name !== name) return false;
      const keys = Object.keys(labels);
      if (exact && keys.length !== Object.keys(sample.labels).length) return false;
      return keys.every((key) => sample.labels[key] === labels[key]);
    });
  }
}

export function parse(text: string): Scrape {
  const types = new Map<string, string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(match[1]!, match[2]!);
  const withoutHistogramTypes = text.replace(/^# TYPE \S+ histogram\n/gm, "");
  const families = parsePrometheusTextFormat(withoutHistogramTypes) as Family[];
  const samples: Sample[] = [];
  for (const family of families) {
    for (const metric of family.metrics) {
      if (metric.value === undefined) throw new Error(`${family.name}: a sample without a value`);
      samples.push({ name: family.name, labels: metric.labels ?? {}, value: parseValue(metric.value) });
    }
  }
  return new Scrape(samples, types);
}

function parseValue(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  const value = Number(text);
  if (Number.isNaN(value) && text !== "NaN") throw new Error(`not a number: ${text}`);
  return value;
}

export const promtool = Bun.which("promtool") ?? Bun.which("promtool", { PATH: "/usr/bin:/usr/local/bin" });

/** `promtool check metrics` on the text: its complaints, or "" when it has none. */
export async function promtoolCheck(text: string): Promise<string> {
  if (promtool === null) throw new Error("promtool is not installed");
  const proc = Bun.spawn([promtool, "check", "metrics"], { stdin: new Blob([text]), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return code === 0 && out.trim() === "" && err.trim() === "" ? "" : `exit ${code}: ${out}${err}`;
}

export async function scrape(url: string): Promise<{ text: string; metrics: Scrape; contentType: string }> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`);
  const text = await response.text();
  return { text, metrics: parse(text), contentType: response.headers.get("content-type") ?? "" };
}
