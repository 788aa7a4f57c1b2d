/**
 * The config file: TOML (or JSON, by extension) → a fully resolved `Config`, defaults applied,
 * durations in ms, addresses parsed. Every error is found in one pass and reported as one line
 * that starts with its path: `listeners[1].backend: unknown backend "cache"`.
 *
 * Each section has one schema (valibot; listener-schema.ts, backend-schema.ts, …, put together in
 * schema.ts), made of the value schemas in values.ts; a new section or key is one entry there
 * plus one line in schema.ts's transform, its default in defaults.ts and its type in the
 * section's types file (listener-types.ts, …; types.ts re-exports them). Relations between
 * sections (references, duplicates) are checked once, in `checkReferences` (checks.ts).
 * Annotated references: test/fixtures/config/example.toml and tls.toml.
 */
import { dirname, resolve } from "node:path";
import { checkFiles, withFiles } from "./files.ts";
import { at, tomlErrorLine } from "./messages.ts";
import { ConfigSchema } from "./schema.ts";
import { interpolate, safeParseInterpolated } from "./interpolate.ts";
import type { Config, ConfigFormat } from "./types.ts";

export type * from "./types.ts";

/** `errors` are the lines without the file name; `message` has one `source: line` per error. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly errors: string[],
  ) {
    super(errors.map((line) => `${source}: ${line}`).join("\n"));
  }
}

/** Reads, parses and validates a config file. Throws ConfigError. */
export async function loadConfig(path: string): Promise<Config> {
  const format = formatOf(path);
  let text: string;
  try {
    text = await Bun.file(path).text();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (error as Error).message;
    throw new ConfigError(path, [`cannot read the config file: ${reason}`]);
  }
  return parseConfig(text, format, path);
}

/** The format a file name implies; throws ConfigError for another extension. */
export function formatOf(path: string): ConfigFormat {
  const extension = /\.[^./\\]*$/.exec(path)?.[0].toLowerCase() ?? "";
  if (extension === ".toml") return "toml";
  if (extension === ".json") return "json";
  throw new ConfigError(path, [`unsupported file type ${extension === "" ? "(no extension)" : `"${extension}"`}: use .toml or .json`]);
}

/**
 * Parses and validates config text. Pure, except that it reads the TLS files the config names
 * (relative paths are taken from the directory of `source`). Throws ConfigError with every
 * error found.
 */
export function parseConfig(
  text: string,
  format: ConfigFormat,
  source = `config.${format}`,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Config {
  let parsed: unknown;
  try {
    parsed = format === "toml" ? Bun.TOML.parse(text) : JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message.replace(/^\w+ Parse error: /, "");
    const line = format === "toml" ? tomlErrorLine(text, (error as Error).message) : null;
    throw new ConfigError(source, [`${line === null ? "" : `line ${line}: `}not valid ${format.toUpperCase()}: ${message}`]);
  }
  // ${NAME} and ${NAME:-default} in string values (interpolate.ts), before anything reads them.
  const interpolated = interpolate(parsed, env);
  const { data, errors: unset } = interpolated;
  const envErrors = unset.map(({ path, message }) =>
    at(
      path.map((key) => ({ key })),
      message,
    ),
  );
  const result = safeParseInterpolated(ConfigSchema, interpolated); // "${MAX}" → 100 where a number belongs
  const base = dirname(resolve(source));
  const fileErrors = checkFiles(data, base).map(({ path, message }) =>
    at(
      path.map((key) => ({ key })),
      message,
    ),
  );
  if (result.success && fileErrors.length === 0 && envErrors.length === 0) return withFiles(result.output, base);
  const errors = result.success ? [] : result.issues.map((issue) => at(issue.path, issue.message));
  throw new ConfigError(source, [...envErrors, ...errors, ...fileErrors]);
}

/** Things that are allowed but probably a mistake: a backend no listener or route uses. */
export function configWarnings(config: Config): string[] {
  const used = new Set(config.listeners.flatMap((listener) => [listener.backend, ...listener.routes.map((route) => route.backend)]));
  return [...config.backends.keys()].filter((name) => !used.has(name)).map((name) => at([{ key: "backends" }, { key: name }], "not used by any listener"));
}
