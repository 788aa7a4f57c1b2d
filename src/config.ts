/**
 * The config file: TOML (or JSON, by extension) → a fully resolved `Config`, defaults applied,
 * durations in ms, addresses parsed. Every error is found in one pass and reported as one line
 * that starts with its path: `listeners[1].backend: unknown backend "cache"`.
 *
 * Each section has one schema below (valibot); a new section or key is one entry there plus
 * one line in its transform. Relations between sections (references, duplicates) are checked
 * once, in `checkReferences`. The reference with every key is test/fixtures/config/example.toml.
 */
import * as v from "valibot";
import { formatAddress, parseAddress, type Address } from "./address.ts";
import { BALANCES, DEFAULT_BALANCE, type Balance } from "./balancer.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { HEALTH_DEFAULTS, type HealthConfig } from "./health.ts";
import { DEFAULTS } from "./router.ts";

export type { Balance, HealthConfig };

export interface Config {
  defaults: DefaultsConfig;
  listeners: ListenerConfig[];
  /** By name, in file order. A backend no listener names is kept (see `configWarnings`). */
  backends: Map<string, BackendConfig>;
  /** The admin listener (metrics, health, status page); absent = off. */
  admin?: AdminConfig;
  /** `"stdout"` or a file path: one line per session; absent = off. */
  accessLog?: string;
}

export interface AdminConfig {
  /** Where the admin HTTP server listens (port 0: any free port). */
  listen: Address;
}

/** Durations in ms, 0 = off. */
export interface DefaultsConfig {
  connectTimeout: number;
  idleTimeout: number;
  drainTimeout: number;
  /** How long a new session waits for a target when every target is full; 0 = it is closed at once. */
  queueTimeout: number;
}

export interface ListenerConfig {
  /** Unique; defaults to the formatted listen address. */
  name: string;
  listen: Address;
  /** The name of a backend of `Config.backends`. */
  backend: string;
  /** Sessions open at once on this listener; 0 = no limit. */
  maxConnections: number;
  /** The defaults' values unless overridden on the listener. */
  connectTimeout: number;
  idleTimeout: number;
}

export interface BackendConfig {
  name: string;
  balance: Balance;
  /** Other targets tried after a failed connect: at most 1 + retries targets per session. */
  retries: number;
  /** At least one; no two with the same address. */
  targets: TargetConfig[];
  /** null = no active checks. */
  health: HealthConfig | null;
}

export interface TargetConfig {
  address: Address;
  /** ≥ 1. */
  weight: number;
  /** 0 = no limit. */
  maxConnections: number;
  backup: boolean;
}

/**
 * The default of every optional key. `retries` 2: HAProxy's default is 3 retries of the same
 * server; ours go to other targets, and 2 covers the usual three-target backend.
 */
export const CONFIG_DEFAULTS = {
  connectTimeout: DEFAULTS.connectTimeout,
  idleTimeout: DEFAULTS.idleTimeout,
  drainTimeout: DEFAULTS.drainTimeout,
  queueTimeout: 5_000,
  maxConnections: DEFAULTS.maxConnections,
  balance: DEFAULT_BALANCE,
  retries: 2,
  weight: 1,
  health: HEALTH_DEFAULTS,
} as const;

export type ConfigFormat = "toml" | "json";

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

/** Parses and validates config text. Pure. Throws ConfigError with every error found. */
export function parseConfig(text: string, format: ConfigFormat, source = `config.${format}`): Config {
  let data: unknown;
  try {
    data = format === "toml" ? Bun.TOML.parse(text) : JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message.replace(/^\w+ Parse error: /, "");
    const line = format === "toml" ? tomlErrorLine(text, (error as Error).message) : null;
    throw new ConfigError(source, [`${line === null ? "" : `line ${line}: `}not valid ${format.toUpperCase()}: ${message}`]);
  }
  const result = v.safeParse(ConfigSchema, data);
  if (result.success) return result.output;
  const errors = result.issues.map((issue) => at(issue.path, issue.message));
  throw new ConfigError(source, errors);
}

/** Things that are allowed but probably a mistake: a backend no listener uses. */
export function configWarnings(config: Config): string[] {
  const used = new Set(config.listeners.map((listener) => listener.backend));
  return [...config.backends.keys()].filter((name) => !used.has(name)).map((name) => at([{ key: "backends" }, { key: name }], "not used by any listener"));
}

// ── Value schemas ──────────────────────────────────────────────────────────────────────────

type Message = (issue: v.BaseIssue<unknown>) => string;

const expected =
  (what: string): Message =>
  (issue) =>
    `expected ${what}, got ${describe(issue.input)}`;

/** setTimeout fires at once for delays of 2^31 ms or more. */
const LONGEST = 2 ** 31 - 1;

function count(min: 0 | 1) {
  const message = expected(`a whole number ≥ ${min}`);
  return v.pipe(v.number(message), v.safeInteger(message), v.minValue(min, message));
}

/** A duration string in ms; `positive` rejects 0 / "off". */
function duration(positive = false) {
  return v.pipe(
    v.string(
      (issue) =>
        `expected a duration such as "10s"${positive ? "" : ' or "off"'}, got ${describe(issue.input)}${typeof issue.input === "number" ? " (add a unit)" : ""}`,
    ),
    parsedBy((text) => {
      const ms = parseDuration(text);
      if (positive && ms === 0) throw new Error(`expected a duration longer than 0, got "${text}"`);
      if (ms > LONGEST) throw new Error(`"${text}" is too long (at most ${formatDuration(Math.floor(LONGEST / 3_600_000) * 3_600_000)})`);
      return ms;
    }),
  );
}

function address(allowPortZero: boolean) {
  return v.pipe(
    v.string(expected('an address such as "127.0.0.1:6379"')),
    parsedBy((text) => parseAddress(text, allowPortZero)),
  );
}

/** Listener and backend names appear in logs and metrics: no spaces or control characters. */
const name = v.pipe(v.string(expected("a name")), v.regex(/^[^\s\p{C}]+$/u, expected("a name without spaces")));

/** Strings are sent and compared as their UTF-8 bytes. */
const bytes = v.pipe(
  v.string(expected("a string")),
  v.minLength(1, expected("a non-empty string")),
  v.transform((text) => new TextEncoder().encode(text)),
);

const boolean = v.boolean(expected("true or false"));

/** Runs a parser that throws errors whose message is the whole explanation. */
function parsedBy<T>(parse: (text: string) => T) {
  return v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
    try {
      return parse(dataset.value);
    } catch (error) {
      addIssue({ message: (error as Error).message });
      return NEVER;
    }
  });
}

/** A table with these keys. Unknown keys are errors; `required` explains each required key. */
function table<const E extends v.ObjectEntries>(entries: E, required: { [K in keyof E]?: string } = {}, what = "a table") {
  const known = Object.keys(entries);
  return v.pipe(
    // looseObject (and record) alone would take an array or a TOML date for a table.
    v.custom<Record<string, unknown>>(isRecord, expected(what)),
    v.looseObject(entries, (issue) => `missing (${required[String(issue.path?.[0]?.key)] ?? "required"})`),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!isRecord(dataset.value)) return;
      for (const key of Object.keys(dataset.value)) {
        if (known.includes(key)) continue;
        const guess = closest(key, known);
        const message = `unknown key (${guess === null ? `expected one of: ${known.join(", ")}` : `did you mean "${guess}"?`})`;
        addIssue({ message, path: [{ type: "object", origin: "key", input: dataset.value, key, value: dataset.value[key] }] });
      }
    }),
  );
}

// ── Sections ───────────────────────────────────────────────────────────────────────────────

const Defaults = table({
  connect_timeout: v.optional(duration()),
  idle_timeout: v.optional(duration()),
  drain_timeout: v.optional(duration()),
  queue_timeout: v.optional(duration()),
});

const Listener = table(
  {
    name: v.optional(name),
    listen: address(true),
    backend: name,
    max_connections: v.optional(count(0)),
    connect_timeout: v.optional(duration()),
    idle_timeout: v.optional(duration()),
  },
  { listen: 'the address to listen on, e.g. "127.0.0.1:11000"', backend: "the name of the backend to forward to" },
);

const TargetTable = v.pipe(
  table(
    { address: address(false), weight: v.optional(count(1)), max_connections: v.optional(count(0)), backup: v.optional(boolean) },
    { address: 'the target\'s address, e.g. "127.0.0.1:6379"' },
    'an address or a table such as { address = "127.0.0.1:6379", weight = 2 }',
  ),
  v.transform((t): TargetConfig => ({
    address: t.address,
    weight: t.weight ?? CONFIG_DEFAULTS.weight,
    maxConnections: t.max_connections ?? CONFIG_DEFAULTS.maxConnections,
    backup: t.backup ?? false,
  })),
);

const TargetAddress = v.pipe(
  address(false),
  v.transform((address): TargetConfig => ({ address, weight: CONFIG_DEFAULTS.weight, maxConnections: CONFIG_DEFAULTS.maxConnections, backup: false })),
);

/** `"host:port"` or `{ address = "host:port", weight, max_connections, backup }`. */
const Target = v.lazy((input) => (typeof input === "string" ? TargetAddress : TargetTable));

const Health = v.pipe(
  table({
    interval: v.optional(duration(true)),
    timeout: v.optional(duration(true)),
    rise: v.optional(count(1)),
    fall: v.optional(count(1)),
    send: v.optional(bytes),
    expect: v.optional(bytes),
  }),
  v.forward(
    v.partialCheck(
      [["interval"], ["timeout"]],
      (h) => h.timeout === undefined || h.timeout <= (h.interval ?? CONFIG_DEFAULTS.health.interval),
      (issue) =>
        `${formatDuration(issue.input.timeout!)} is longer than the interval (${formatDuration(issue.input.interval ?? CONFIG_DEFAULTS.health.interval)})`,
    ),
    ["timeout"],
  ),
  v.forward(
    v.partialCheck(
      [["send"], ["expect"]],
      (h) => h.send === undefined || h.expect !== undefined,
      "missing (a check that sends must say what the reply starts with)",
    ),
    ["expect"],
  ),
  v.transform((h): HealthConfig => {
    const interval = h.interval ?? CONFIG_DEFAULTS.health.interval;
    return {
      interval,
      // 1 s, or the interval when that is shorter: a check ends before the next one starts.
      timeout: h.timeout ?? Math.min(CONFIG_DEFAULTS.health.timeout, interval),
      rise: h.rise ?? CONFIG_DEFAULTS.health.rise,
      fall: h.fall ?? CONFIG_DEFAULTS.health.fall,
      send: h.send ?? null,
      expect: h.expect ?? null,
    };
  }),
);

const BALANCE_LIST = `${BALANCES.slice(0, -1).join(", ")} or ${BALANCES.at(-1)}`;
const balance = v.picklist(BALANCES, (issue) =>
  typeof issue.input === "string" ? `unknown balance ${describe(issue.input)} (use ${BALANCE_LIST})` : expected(BALANCE_LIST)(issue),
);

const Backend = table(
  {
    balance: v.optional(balance),
    retries: v.optional(count(0)),
    targets: v.pipe(v.array(Target, expected('a list of targets such as ["127.0.0.1:6379"]')), v.minLength(1, "expected at least one target")),
    health: v.optional(Health),
  },
  { targets: 'a list of addresses such as ["127.0.0.1:6379"]' },
);

const Admin = table({ listen: address(true) }, { listen: 'the address to serve metrics and status on, e.g. "127.0.0.1:9901"' });

/** `"stdout"`, a file path, or `"off"`. */
const accessLog = v.pipe(v.string(expected('"stdout", "off" or a file path')), v.minLength(1, expected('"stdout", "off" or a file path')));

const ConfigSchema = v.pipe(
  table(
    {
      access_log: v.optional(accessLog),
      admin: v.optional(Admin),
      defaults: v.optional(Defaults),
      listeners: v.pipe(v.array(Listener, expected("an array of tables ([[listeners]])")), v.minLength(1, "expected at least one listener")),
      backends: v.optional(v.pipe(v.custom<Record<string, unknown>>(isRecord, expected("a table of backends ([backends.NAME])")), v.record(name, Backend))),
    },
    { listeners: "at least one [[listeners]] table" },
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    for (const { path, message } of checkReferences(dataset.value, dataset.issues ?? [])) {
      const items = path.map((key): v.IssuePathItem => ({ type: "unknown", origin: "value", input: undefined, key, value: undefined }));
      addIssue({ message, path: items as [v.IssuePathItem, ...v.IssuePathItem[]] });
    }
  }),
  v.transform((file): Config => {
    const d = file.defaults;
    const defaults: DefaultsConfig = {
      connectTimeout: d?.connect_timeout ?? CONFIG_DEFAULTS.connectTimeout,
      idleTimeout: d?.idle_timeout ?? CONFIG_DEFAULTS.idleTimeout,
      drainTimeout: d?.drain_timeout ?? CONFIG_DEFAULTS.drainTimeout,
      queueTimeout: d?.queue_timeout ?? CONFIG_DEFAULTS.queueTimeout,
    };
    const listeners = file.listeners.map((l): ListenerConfig => ({
      name: l.name ?? formatAddress(l.listen),
      listen: l.listen,
      backend: l.backend,
      maxConnections: l.max_connections ?? CONFIG_DEFAULTS.maxConnections,
      connectTimeout: l.connect_timeout ?? defaults.connectTimeout,
      idleTimeout: l.idle_timeout ?? defaults.idleTimeout,
    }));
    const backends = new Map<string, BackendConfig>();
    for (const [name, b] of Object.entries(file.backends ?? {})) {
      backends.set(name, {
        name,
        balance: b.balance ?? CONFIG_DEFAULTS.balance,
        retries: b.retries ?? CONFIG_DEFAULTS.retries,
        targets: b.targets,
        health: b.health ?? null,
      });
    }
    const config: Config = { defaults, listeners, backends };
    if (file.admin !== undefined) config.admin = { listen: file.admin.listen };
    if (file.access_log !== undefined && file.access_log !== "off") config.accessLog = file.access_log;
    return config;
  }),
);

// ── Relations between sections ─────────────────────────────────────────────────────────────

type Key = string | number;

/**
 * Unique listener names and listen addresses, known backends, unique targets per backend.
 * Runs on the partly validated file: a value that has an error of its own is skipped.
 */
function checkReferences(file: unknown, issues: readonly v.BaseIssue<unknown>[]): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  const invalid = issues.map((issue) => pathText(issue.path));
  const valid = (...path: Key[]) => {
    const prefix = pathText(path.map((key) => ({ key })));
    return !invalid.some((bad) => bad === prefix || bad.startsWith(prefix + ".") || bad.startsWith(prefix + "["));
  };
  if (!isRecord(file)) return errors;
  // No [backends] at all: every name is unknown. Not a table: that is its own error.
  const backends = file.backends === undefined ? {} : isRecord(file.backends) ? file.backends : null;

  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  const listeners = Array.isArray(file.listeners) ? file.listeners : [];
  listeners.forEach((listener: unknown, i) => {
    if (!isRecord(listener)) return;
    const listenOk = valid("listeners", i, "listen") && isAddress(listener.listen);
    let duplicateListen = false;
    if (listenOk) {
      const address = listener.listen as Address;
      const key = identity(address);
      const first = addresses.get(key);
      if (first !== undefined && !(address.kind === "tcp" && address.port === 0)) {
        errors.push({ path: ["listeners", i, "listen"], message: `${formatAddress(address)} is already used by listeners[${first}]` });
        duplicateListen = true;
      } else if (first === undefined) addresses.set(key, i);
    }
    const named = listener.name !== undefined;
    if (named ? valid("listeners", i, "name") && typeof listener.name === "string" : listenOk) {
      const name = named ? (listener.name as string) : formatAddress(listener.listen as Address);
      const first = names.get(name);
      if (first === undefined) names.set(name, i);
      else if (named || !duplicateListen) {
        const why = named ? "" : " (a listener without a name is named after its listen address)";
        errors.push({ path: ["listeners", i, "name"], message: `"${name}" is already used by listeners[${first}]${why}` });
      }
    }
    if (backends !== null && valid("listeners", i, "backend") && typeof listener.backend === "string" && !Object.hasOwn(backends, listener.backend)) {
      errors.push({ path: ["listeners", i, "backend"], message: `unknown backend "${listener.backend}"` });
    }
  });

  if (isRecord(file.admin) && valid("admin", "listen") && isAddress(file.admin.listen)) {
    const first = addresses.get(identity(file.admin.listen));
    if (first !== undefined && !(file.admin.listen.kind === "tcp" && file.admin.listen.port === 0)) {
      errors.push({ path: ["admin", "listen"], message: `${formatAddress(file.admin.listen)} is already used by listeners[${first}]` });
    }
  }

  for (const [name, backend] of Object.entries(backends ?? {})) {
    if (!isRecord(backend) || !Array.isArray(backend.targets)) continue;
    const seen = new Map<string, number>();
    backend.targets.forEach((target: unknown, j) => {
      if (!valid("backends", name, "targets", j) || !isRecord(target) || !isAddress(target.address)) return;
      const key = identity(target.address);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, j);
      else errors.push({ path: ["backends", name, "targets", j], message: `${formatAddress(target.address)} is already listed as targets[${first}]` });
    });
  }
  return errors;
}

/** Two addresses that bind or dial the same thing (hostnames compared without resolving them). */
function identity(address: Address): string {
  return address.kind === "unix" ? `unix:${address.path}` : formatAddress({ ...address, host: address.host.toLowerCase() });
}

// ── Messages ───────────────────────────────────────────────────────────────────────────────

/** `listeners[1].backend: message`, or the message alone for the whole file. */
function at(path: readonly { key: unknown }[] | undefined, message: string): string {
  const text = pathText(path);
  return text === "" ? message : `${text}: ${message}`;
}

/** `backends."my cache".targets[0]`: keys that are not bare TOML keys are quoted. */
function pathText(path: readonly { key: unknown }[] | undefined): string {
  let text = "";
  for (const { key } of path ?? []) {
    if (typeof key === "number") text += `[${key}]`;
    else text += (text === "" ? "" : ".") + (/^[A-Za-z0-9_-]+$/.test(String(key)) ? String(key) : JSON.stringify(String(key)));
  }
  return text;
}

function describe(value: unknown): string {
  if (typeof value === "string") return value.length > 60 ? `${JSON.stringify(value.slice(0, 57)).slice(0, -1)}..."` : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  return isRecord(value) ? "a table" : "a date or time";
}

/** The known key a typo most likely meant: same letters ignoring case, `-` and `_`, or ≤ 2 edits. */
function closest(key: string, known: readonly string[]): string | null {
  const plain = (text: string) => text.toLowerCase().replace(/[-_]/g, "");
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = plain(candidate) === plain(key) ? 0 : editDistance(key, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/**
 * Bun's TOML parser does not say where it failed. The line is the first from which every
 * longer prefix of the file fails with the same message (a prefix that ends inside a
 * multi-line array fails too, but differently, or stops failing once the array closes).
 */
function tomlErrorLine(text: string, message: string): number | null {
  const lines = text.split("\n");
  if (lines.length > 1000) return null; // each step parses the file again
  const failsSame = (count: number) => {
    try {
      Bun.TOML.parse(lines.slice(0, count).join("\n"));
      return false;
    } catch (error) {
      return (error as Error).message === message;
    }
  };
  let line = lines.length;
  while (line > 1 && failsSame(line - 1)) line--;
  return line;
}

/** A TOML table or JSON object; not an array, and not a TOML date or time (Temporal objects). */
function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function isAddress(value: unknown): value is Address {
  return isRecord(value) && (value.kind === "tcp" || value.kind === "unix");
}
