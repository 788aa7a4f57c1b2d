/** What every bench entry point shares: its flag checks, its messages, the default tcprouter command. */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** The flags every suite takes; --only is checked by each suite against its own rows. */
const COMMON_OPTIONS = {
  rounds: { type: "string" },
  only: { type: "string" },
  "tcprouter-cmd": { type: "string" },
  smoke: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const satisfies ParseArgsConfig["options"];

/** The common flags plus the suite's own; --help prints `help` and exits 0, a bad flag exits 1 with one line. */
export function parseBenchFlags<T extends NonNullable<ParseArgsConfig["options"]>>(options: T, help: string) {
  let values;
  try {
    ({ values } = parseArgs<{ options: typeof COMMON_OPTIONS & T }>({ options: { ...COMMON_OPTIONS, ...options } }));
  } catch (error) {
    fail((error as Error).message); // an unknown flag, a missing value: one line, not a stack
  }
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help);
    process.exit(0);
  }
  return values;
}

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
