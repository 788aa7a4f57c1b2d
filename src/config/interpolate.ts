/**
 * Environment variables in config values, as Docker Compose and HAProxy users write them:
 * `${NAME}`, `${NAME:-default}` (the default when NAME is unset or empty), `${NAME-default}`
 * (only when unset), and `$$` for a literal `$`. A `$` followed by anything else is kept as it
 * is. Only string values are interpolated, never keys. A string that is one reference and
 * nothing else (`"${MAX}"`, `"${MAX:-100}"`) becomes a number or a boolean where the schema
 * takes one and not a string (`max_connections = "${MAX}"`), as Compose does for its typed
 * fields; anywhere else it stays a string. Interpolation runs on the parsed file, before
 * validation, so an interpolated value is checked like a written one.
 *
 * An unset variable without a default is an error at its value's path, reported with every
 * other error of the file. Secrets keep their own keys (`password_env`, `password_file`), whose
 * values are read later and never printed.
 */
import * as v from "valibot";

export interface InterpolationError {
  path: (string | number)[];
  message: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** The interpolated data, its errors, and the paths of the strings that were one reference (`"${MAX}"`). */
export interface Interpolated {
  data: unknown;
  errors: InterpolationError[];
  whole: (string | number)[][];
}

const PLACEHOLDER = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$\{([^}]*)\}?/g;

/** A string that is one reference and nothing else: `"${MAX}"`, `"${MAX:-100}"`. */
export const WHOLE_REFERENCE = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}$/;

/** A copy of `data` with every string value interpolated, and the errors found. */
export function interpolate(data: unknown, env: Env = process.env): Interpolated {
  const errors: InterpolationError[] = [];
  const whole: (string | number)[][] = [];
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (typeof value === "string") {
      if (!value.includes("$")) return value;
      if (WHOLE_REFERENCE.test(value)) whole.push(path);
      return substitute(value, path, env, errors);
    }
    if (Array.isArray(value)) return value.map((item, index) => walk(item, [...path, index]));
    // Plain tables only: a TOML date stays a date (and is refused where a table belongs).
    if (value !== null && typeof value === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[key] = walk(item, [...path, key]);
      return out;
    }
    return value;
  };
  return { data: walk(data, []), errors, whole };
}

/**
 * `v.safeParse(schema, data)`, where a string that was one reference and is refused for not
 * being a number (or a boolean) is tried again as one: `"100"` → 100, `"true"` → true. Such a
 * value is changed in `data` itself (interpolate's copy). A string that reads as neither keeps
 * its error (`expected a whole number ≥ 0, got "lots"`).
 */
export function safeParseInterpolated<const S extends v.GenericSchema>(schema: S, { data, whole }: Interpolated): v.SafeParseResult<S> {
  const result = v.safeParse(schema, data);
  if (result.success || whole.length === 0) return result;
  const references = new Set(whole.map((path) => JSON.stringify(path)));
  let changed = false;
  for (const issue of result.issues) {
    const path = (issue.path ?? []).map((item) => item.key as string | number);
    if (typeof issue.input !== "string" || !references.has(JSON.stringify(path))) continue;
    const typed = typedValue(issue.input, wants(issue));
    if (typed === undefined) continue;
    setAt(data, path, typed);
    changed = true;
  }
  return changed ? v.safeParse(schema, data) : result;
}

/** The scalar types an issue (or, for a union, any of its options) asked for. */
function wants(issue: v.BaseIssue<unknown>): Set<string> {
  const types = new Set<string>();
  if (issue.kind === "schema" && (issue.type === "number" || issue.type === "boolean")) types.add(issue.type);
  for (const inner of issue.issues ?? []) if (inner.input === issue.input) for (const type of wants(inner)) types.add(type);
  return types;
}

function typedValue(text: string, types: Set<string>): number | boolean | undefined {
  if (types.has("number") && /^[+-]?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (types.has("boolean") && (text === "true" || text === "false")) return text === "true";
  return undefined;
}

function setAt(data: unknown, path: (string | number)[], value: unknown): void {
  let node = data as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path.at(-1)!] = value;
}

function substitute(text: string, path: (string | number)[], env: Env, errors: InterpolationError[]): string {
  return text.replace(PLACEHOLDER, (match, name: string | undefined, operator: string | undefined, fallback: string | undefined, bad: string | undefined) => {
    if (match === "$$") return "$";
    if (name === undefined) {
      errors.push({ path, message: `"${match}" is not a variable reference: use \${NAME}, \${NAME:-default} or $$ for a literal $` });
      return match;
    }
    void bad;
    const value = env[name];
    if (operator === ":-" && (value === undefined || value === "")) return fallback ?? "";
    if (operator === "-" && value === undefined) return fallback ?? "";
    if (value === undefined) {
      errors.push({ path, message: `environment variable ${name} is not set (give it a value, or a default: \${${name}:-value})` });
      return "";
    }
    return value;
  });
}
