/** Flags: what every suite takes, the checks of numbers and lists, and the one-line errors. */
import { type ParseArgsConfig, parseArgs } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The flags every suite takes; each suite adds its own (--only is checked against its own rows). */
const COMMON_OPTIONS = {
  rounds: { type: "string" },
  smoke: { type: "boolean", default: false },
  json: { type: "boolean", default: false },
  markdown: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const satisfies Options;

/** The flags of the suites that run a tcprouter against a baseline build of it (redis, syscalls). */
export const TCPROUTER_CMD_OPTIONS = {
  "tcprouter-cmd": { type: "string" },
  "baseline-cmd": { type: "string" },
} as const satisfies Options;

/** Their --help lines. */
export const TCPROUTER_CMD_HELP = `  --tcprouter-cmd CMD   command instead of "bun run src/cli.ts", e.g. dist/tcprouter
  --baseline-cmd CMD    also run this tcprouter as "tcprouter-base" (before/after in one run),
                        e.g. "bun run ../before/src/cli.ts"; without it tcprouter-base is left out
`;

/** The contenders by default: every one named, but tcprouter-base only with --baseline-cmd. */
export function defaultContenders<T extends string>(names: readonly T[], baselineCmd: string | undefined): T[] {
  return names.filter((name) => name !== "tcprouter-base" || baselineCmd !== undefined);
}

/** The lines of --help every suite shares. */
export const COMMON_HELP = `  --smoke               tiny counts, finishes in well under a minute (CI)
  --json                print the JSON result on stdout (the table goes to stderr)
  --markdown            also print the table as Markdown
`;

/**
 * `args` (run.ts's argv without --suite) against the common flags plus the suite's own.
 * --help prints `help` and exits 0; a bad flag exits 1 with one line.
 */
export function parseBenchFlags<T extends Options>(suite: string, args: string[], options: T, help: string) {
  const parse = () => {
    try {
      return parseArgs<{ args: string[]; options: typeof COMMON_OPTIONS & T }>({ args, options: { ...COMMON_OPTIONS, ...options } }).values;
    } catch (error) {
      // an unknown flag, a missing value: one line, not a stack
      const unknown = (error as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION";
      fail(`${(error as Error).message}${unknown ? ` for --suite ${suite} (bun run bench/run.ts --suite ${suite} --help lists its flags)` : ""}`);
    }
  };
  const values = parse();
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
  const items = raw
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
  for (const item of items) if (!allowed.includes(item as T)) fail(`--${flag}: unknown "${item}" (one of ${allowed.join(",")})`);
  return items as T[];
}
