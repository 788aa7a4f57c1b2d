/**
 * Environment variables in config values, as Docker Compose and HAProxy users write them:
 * `${NAME}`, `${NAME:-default}` (the default when NAME is unset or empty), `${NAME-default}`
 * (only when unset), and `$$` for a literal `$`. A `$` followed by anything else is kept as it
 * is. Only string values are interpolated (numbers and booleans are written as such in the
 * file; durations, sizes and addresses are strings and can come from the environment); keys
 * never are. Interpolation runs on the parsed file, before validation, so an interpolated
 * value is checked like a written one.
 *
 * An unset variable without a default is an error at its value's path, reported with every
 * other error of the file. Secrets keep their own keys (`password_env`, `password_file`), whose
 * values are read later and never printed.
 */

export interface InterpolationError {
  path: (string | number)[];
  message: string;
}

type Env = Readonly<Record<string, string | undefined>>;

const PLACEHOLDER = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$\{([^}]*)\}?/g;

/** A copy of `data` with every string value interpolated, and the errors found. */
export function interpolate(data: unknown, env: Env = process.env): { data: unknown; errors: InterpolationError[] } {
  const errors: InterpolationError[] = [];
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (typeof value === "string") return value.includes("$") ? substitute(value, path, env, errors) : value;
    if (Array.isArray(value)) return value.map((item, index) => walk(item, [...path, index]));
    // Plain tables only: a TOML date stays a date (and is refused where a table belongs).
    if (value !== null && typeof value === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[key] = walk(item, [...path, key]);
      return out;
    }
    return value;
  };
  return { data: walk(data, []), errors };
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
