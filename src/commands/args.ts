/** Flag fragments shared by commands. Their defaults are read from config/defaults.ts. */
import type { ArgsDef } from "citty";
import { DEFAULTS } from "../config/defaults.ts";
import { type DurationError, formatDuration, parseDuration } from "../util/duration.ts";

const count = (n: number): string => (n === 0 ? "off" : String(n));

export const logArgs = {
  "log-level": { type: "enum", options: ["error", "warn", "info", "debug"], default: "info", description: "Log level" },
  "log-format": { type: "enum", options: ["fancy", "json"], default: "fancy", description: "Log format: fancy (text) or json (one object per line)" },
} as const satisfies ArgsDef;

export const forwardArgs = {
  listen: { type: "string", default: DEFAULTS.listen, description: "Address to listen on: host:port, [v6]:port, name:port or unix:/path" },
  to: { type: "string", description: "Target address (required without --config): host:port, [v6]:port, name:port or unix:/path" },
  "connect-timeout": {
    type: "string",
    default: formatDuration(DEFAULTS.connectTimeout),
    description: "Give up on an upstream connect after this long (500ms, 10s, 2m; off)",
  },
  "idle-timeout": { type: "string", default: formatDuration(DEFAULTS.idleTimeout), description: "Close a session with no bytes either way for this long" },
  "max-connections": { type: "string", default: count(DEFAULTS.maxConnections), description: "Sessions open at once; more are closed at once and counted" },
  "drain-timeout": {
    type: "string",
    default: formatDuration(DEFAULTS.drainTimeout),
    description: "On SIGINT/SIGTERM, how long open sessions may take to finish",
  },
} as const satisfies ArgsDef;

/** Off unless given; `[admin] listen` and `access_log` in a config file, which these override. */
export const observeArgs = {
  admin: {
    type: "string",
    description:
      "Serve /metrics, /healthz, /readyz, /status, a status page and the control API (/api/) on this address, e.g. 127.0.0.1:9901 (off unless given)",
  },
  "access-log": {
    type: "string",
    description: "One line per session when it ends, to stdout or a file (reopened on SIGUSR1); JSON with --log-format json (off unless given)",
  },
  "admin-token-file": {
    type: "string",
    description: `File with the bearer token that the admin's control API (/api/) requires for changes; else $${DEFAULTS.admin.tokenEnv}; without either, changes are off`,
  },
} as const satisfies ArgsDef;

export const processArgs = {
  workers: { type: "string", default: "1", description: "Worker processes sharing the listeners (bound once, passed to each); auto = one per core" },
  "upgrade-timeout": {
    type: "string",
    default: formatDuration(DEFAULTS.upgradeTimeout),
    description: "SIGUSR2 / ctl upgrade: how long the new process may take to be ready before it is killed and this one serves on",
  },
} as const satisfies ArgsDef;

export class UsageError extends Error {}

/** citty ignores flags it does not know; a typo must not pass silently. */
export function rejectUnknownFlags(rawArgs: string[], known: ArgsDef): void {
  const names = new Set(["help", "h", "version", "v"]);
  for (const [name, def] of Object.entries(known)) {
    names.add(name);
    for (const alias of ["alias" in def ? (def.alias ?? []) : []].flat()) names.add(alias);
  }
  for (const arg of rawArgs) {
    if (arg === "--") break;
    if (!arg.startsWith("-") || /^-\d/.test(arg)) continue;
    const name = arg.replace(/^--?/, "").split("=")[0]!.replace(/^no-/, "");
    if (!names.has(name)) throw new UsageError(`unknown flag ${arg.split("=")[0]} (see --help)`);
  }
}

/** A count flag: a whole number ≥ 0, or `off` (0). */
export function parseCount(flag: string, value: string): number {
  if (value === "off") return 0;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag}: "${value}" is not a whole number (or off)`);
  return Number(value);
}

/** A duration flag, in ms (0 = off). */
export function flagDuration(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new UsageError(`--${flag}: ${(error as DurationError).message}`);
  }
}
