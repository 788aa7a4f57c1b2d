/** What every bench entry point shares: its flag checks, its messages, the default tcprouter command. */

/** Progress and skip lines go to stderr; stdout is left for --json. */
export const say = (line: string): void => void process.stderr.write(`${line}\n`);

/** A bad flag: one line, exit 1. */
export function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(1);
}

/** `bun run src/cli.ts`, with the running bun where `bun` is not on the PATH. */
export const DEFAULT_TCPROUTER_CMD = `${Bun.which("bun") ? "bun" : process.execPath} run src/cli.ts`;

/** A positive whole number from `--flag`, else the default (the smoke one under --smoke). */
export function positiveInt(flag: string, raw: string | undefined, fallback: number, smokeFallback: number, smoke: boolean): number {
  if (raw === undefined) return smoke ? smokeFallback : fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) fail(`--${flag}: expected a positive integer, got "${raw}"`);
  return n;
}

/** A comma-separated `--flag a,b` of allowed values; all of them when absent. */
export function listOf<T extends string>(flag: string, raw: string | undefined, allowed: readonly T[]): T[] {
  if (raw === undefined) return [...allowed];
  const items = raw.split(",").map((item) => item.trim()).filter(Boolean);
  for (const item of items) if (!allowed.includes(item as T)) fail(`--${flag}: unknown "${item}" (one of ${allowed.join(",")})`);
  return items as T[];
}
