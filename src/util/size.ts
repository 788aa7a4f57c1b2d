/**
 * Byte sizes and rates as a config writes them: a whole number of bytes, or a number with a
 * unit: `B`, decimal `kB`/`KB` (1000), `MB`, `GB`, or binary `KiB` (1024), `MiB`, `GiB`.
 * `"100MB"` is 100,000,000 bytes, `"64MiB"` 67,108,864; `"1.5MB"` works too (rounded down to
 * a whole byte). Rates use the same words per second. Units are written as here: a lower-case
 * `b` is bits in most tools (`"100Mb"`, `"10mbit"`), so it is refused rather than read as bytes.
 */

const UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1e3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

export class SizeError extends Error {}

/** Bytes for a size (`"64MiB"`, `"100MB"`, `"512B"`, `"4096"`, or a number). Throws SizeError with a one-line message. */
export function parseSize(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isSafeInteger(input) || input < 0) throw new SizeError(`${input} is not a whole number of bytes ≥ 0`);
    return input;
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(input);
  if (match === null) throw new SizeError(`"${input}" is not a size (use bytes, or a number with B, kB, MB, GB, KiB, MiB or GiB: "64MiB", "100MB")`);
  const unit = match[2]!;
  const factor = unit === "" ? 1 : UNITS[unit];
  if (factor === undefined) {
    const why = /^[kKmMgG]?i?b(it|its|ps)?$/.test(unit) ? "a lower-case b is bits; sizes are bytes" : "use";
    throw new SizeError(`"${input}": unknown unit "${unit}" (${why}: B, kB, MB, GB, KiB, MiB or GiB)`);
  }
  const bytes = Math.floor(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw new SizeError(`"${input}" is too large`);
  return bytes;
}

/** A size for people: `64 MiB`, `100 MB`, `512 B`. */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const)
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor} ${unit}`;
  for (const [unit, factor] of [
    ["GB", 1e9],
    ["MB", 1e6],
    ["kB", 1e3],
  ] as const)
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor} ${unit}`;
  return `${bytes} B`;
}
