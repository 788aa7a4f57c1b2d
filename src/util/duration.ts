/** Durations as written in flags and config: `500ms`, `10s`, `2m`, `1h`; `0` and `off` disable. */

export class DurationError extends Error {}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Returns milliseconds; 0 means off. Throws DurationError quoting the input. */
export function parseDuration(input: string | number): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0) throw new DurationError(`"${input}" is not a duration`);
    return input;
  }
  const text = input.trim();
  if (text === "0" || text === "off") return 0;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  if (!match) throw new DurationError(`"${input}" is not a duration (use e.g. 500ms, 10s, 2m, or off)`);
  return Math.round(Number(match[1]) * UNITS[match[2]!]!);
}

export function formatDuration(ms: number): string {
  if (ms === 0) return "off";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
