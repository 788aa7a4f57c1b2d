/**
 * The config file: TOML (or JSON, by extension) → a fully resolved `Config`, defaults applied,
 * durations in ms, addresses parsed. Every error is found in one pass and reported as one line
 * that starts with its path: `listeners[1].backend: unknown backend "cache"`.
 *
 * Each section has one schema below (valibot); a new section or key is one entry there plus
 * one line in its transform. Relations between sections (references, duplicates) are checked
 * once, in `checkReferences` (config-checks.ts). Annotated references: test/fixtures/config/example.toml
 * and tls.toml.
 */
import { dirname, resolve } from "node:path";
import { checkFiles, checkReferences, withFiles } from "./config-checks.ts";
import { at, closest, describe, isRecord, tomlErrorLine } from "./config-messages.ts";
import * as v from "valibot";
import { formatAddress, parseAddress, type Address } from "./address.ts";
import { formatCidr, parseCidr } from "./cidr.ts";
import { parseServerNamePattern } from "./sni.ts";
import { BALANCES, DEFAULT_BALANCE, type Balance } from "./balancer.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { HEALTH_DEFAULTS, type HealthConfig } from "./health.ts";
import { DEFAULTS } from "./router.ts";
import { DISCOVERY_DEFAULTS, parseDnsServer } from "./dns.ts";

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
  /** DNS servers (`ip:port`) that hostname targets are looked up with; absent = the system resolver. */
  dnsServers?: string[];
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
  /**
   * "tcp" (default): every connection goes to `backend`. "sni": TLS passthrough; the
   * ClientHello's server name and ALPN pick one of `routes`, else `backend`.
   */
  mode: "tcp" | "sni";
  /**
   * The name of a backend of `Config.backends`. Always set in tcp mode. In sni mode it is the
   * default route (no route matched, or no SNI); null = such clients get the TLS alert
   * unrecognized_name (112) and are closed.
   */
  backend: string | null;
  /** sni mode: the routes in file order (empty in tcp mode). See `RouteConfig`. */
  routes: RouteConfig[];
  /** sni mode and accept_proxy: ms a client has to send its PROXY header and ClientHello; default 10 s, never 0. */
  helloTimeout: number;
  /** Every connection starts with a PROXY header (v1 or v2) from a `trusted` address; default false. */
  acceptProxy: boolean;
  /** CIDRs (canonical, `127.0.0.1/32`) allowed to send a PROXY header; non-empty iff `acceptProxy`. */
  trusted: string[];
  /**
   * Source ACLs on the client address (the PROXY header's source when `acceptProxy`), as
   * canonical CIDRs. A client is refused when it is in `deny`, or when `allow` is not empty and
   * it is in none of `allow`. Empty = no rule. IPv6 ranges match only IPv6 clients.
   */
  allow: string[];
  deny: string[];
  /** Sessions open at once from one client IP; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** New connections per second from one client IP; 0 = no limit. */
  connectionRatePerIp: number;
  /** Terminate TLS (certificate by SNI) and forward plaintext (tcp mode only); null = no TLS. */
  tls: ListenerTlsConfig | null;
  /** Sessions open at once on this listener; 0 = no limit. */
  maxConnections: number;
  /** The defaults' values unless overridden on the listener. */
  connectTimeout: number;
  idleTimeout: number;
}

/**
 * One SNI route: a client that matches goes to `backend`. At least one of `serverNames` and
 * `alpn` is non-empty; with both, both must match. Precedence (src/sni.ts): exact name, then
 * wildcard, then ALPN-only, then the listener's backend; the first listed wins within a kind.
 * An empty `alpn` means "any protocol" (pass it to `ServerNameRoutes` as undefined).
 */
export interface RouteConfig {
  /** Normalized by `parseServerNamePattern`: lower case, no trailing dot; `*.example.com` = one label. */
  serverNames: string[];
  /** ALPN protocol ids (`h2`, `http/1.1`), exact; the client must offer one of them. */
  alpn: string[];
  backend: string;
}

/** A terminating listener's certificates; the first is the default. */
export interface ListenerTlsConfig {
  certificates: ListenerCertificate[];
}

/** Absolute paths (relative ones are taken from the config file's directory), checked at load. */
export interface ListenerCertificate {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** PEM private key of the leaf certificate (not encrypted). */
  key: string;
  /**
   * The server names (SNI) it is served for, normalized (`*.example.com` = one label): `names`
   * from the config, else the leaf's DNS subjectAltNames (its CN when it has none), read at load.
   */
  names: string[];
}

/** How a backend dials its targets over TLS. */
export interface BackendTlsConfig {
  /** SNI sent and the name the certificate is verified against; null = the target's host. */
  serverName: string | null;
  /** Absolute path of a PEM bundle of trusted CAs; null = the system's. */
  ca: string | null;
  /** Close the session when the certificate does not verify; default true. */
  verify: boolean;
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
  /** A PROXY header sent first on every upstream connection, so targets learn the client's address; null = none. */
  sendProxy: "v1" | "v2" | null;
  /** Dial targets over TLS; null = plain TCP. */
  tls: BackendTlsConfig | null;
  /** ms between two lookups of a hostname target (or its TTL when shorter), ≥ 1000. Absent = 30 s; parseConfig always sets it. */
  resolveInterval?: number;
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
  resolveInterval: DISCOVERY_DEFAULTS.resolveInterval,
  /** Real clients send their hello in the first packet; 10 s allows for slow links and retransmits. */
  helloTimeout: 10_000,
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

/**
 * Parses and validates config text. Pure, except that it reads the TLS files the config names
 * (relative paths are taken from the directory of `source`). Throws ConfigError with every
 * error found.
 */
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
  const base = dirname(resolve(source));
  const fileErrors = checkFiles(data, base).map(({ path, message }) => at(path.map((key) => ({ key })), message));
  if (result.success && fileErrors.length === 0) return withFiles(result.output, base);
  const errors = result.success ? [] : result.issues.map((issue) => at(issue.path, issue.message));
  throw new ConfigError(source, [...errors, ...fileErrors]);
}

/** Things that are allowed but probably a mistake: a backend no listener or route uses. */
export function configWarnings(config: Config): string[] {
  const used = new Set(config.listeners.flatMap((listener) => [listener.backend, ...listener.routes.map((route) => route.backend)]));
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

/** At least 1s: no name is looked up more often than that, whatever its TTL. */
const resolveInterval = v.pipe(
  duration(true),
  v.minValue(DISCOVERY_DEFAULTS.minInterval, (issue) => `expected at least ${formatDuration(DISCOVERY_DEFAULTS.minInterval)}, got "${formatDuration(Number(issue.input))}"`),
);

/** IP addresses with an optional port: `"10.0.0.2"`, `"127.0.0.1:5353"`, `"[::1]:53"`. */
const dnsServers = v.pipe(
  v.array(
    v.pipe(v.string(expected('a DNS server address such as "127.0.0.1:53"')), parsedBy(parseDnsServer)),
    expected('a list of DNS servers such as ["127.0.0.1:53"]'),
  ),
  v.minLength(1, "expected at least one server (leave dns_servers out to use the system resolver)"),
);

/** CIDR ranges (a bare address is a /32 or /128), kept in canonical form: `"10.0.0.0/8"`. */
function cidrList(min: 0 | 1, emptyMessage = "") {
  const list = v.array(
    v.pipe(v.string(expected('a CIDR range such as "10.0.0.0/8"')), parsedBy((text) => formatCidr(parseCidr(text)))),
    expected('a list of CIDR ranges such as ["10.0.0.0/8", "::1/128"]'),
  );
  return min === 0 ? list : v.pipe(list, v.minLength(1, emptyMessage));
}

/** `db.example.com` or `*.example.com`, normalized (lower case, no trailing dot). */
function serverNames(emptyMessage: string) {
  return v.pipe(
    v.array(
      v.pipe(v.string(expected('a server name such as "db.example.com" or "*.example.com"')), parsedBy(parseServerNamePattern)),
      expected('a list of server names such as ["db.example.com", "*.example.com"]'),
    ),
    v.minLength(1, emptyMessage),
  );
}

/** RFC 7301 protocol ids as bytes on the wire: printable ASCII, 1-255 of them. */
const alpnList = v.pipe(
  v.array(
    v.pipe(
      v.string(expected('an ALPN protocol id such as "h2"')),
      v.regex(/^[\x21-\x7e]{1,255}$/, expected('an ALPN protocol id such as "h2" or "http/1.1" (1-255 printable ASCII characters)')),
    ),
    expected('a list of ALPN protocol ids such as ["h2", "http/1.1"]'),
  ),
  v.minLength(1, "expected at least one protocol (leave alpn out to match by server name alone)"),
);

/** A file path; whether it can be read is checked after the schema, in `checkFiles`. */
const filePath = v.pipe(v.string(expected("a file path")), v.minLength(1, expected("a file path")));

/** The name sent as SNI to a TLS target: a DNS name, no wildcard. */
const sendServerName = v.pipe(
  v.string(expected('a server name such as "db.example.com"')),
  parsedBy((text) => {
    const name = parseServerNamePattern(text);
    if (name.startsWith("*.")) throw new Error(`"${text}": a wildcard cannot be sent as a server name`);
    return name;
  }),
);

const sendProxy = v.picklist(["v1", "v2", "off"], (issue) =>
  typeof issue.input === "string" ? `unknown PROXY protocol version ${describe(issue.input)} (use "v1", "v2" or "off")` : expected('"v1", "v2" or "off"')(issue),
);

const mode = v.picklist(["tcp", "sni"], (issue) =>
  typeof issue.input === "string" ? `unknown mode ${describe(issue.input)} (use "tcp" or "sni")` : expected('"tcp" or "sni"')(issue),
);

// ── Sections ───────────────────────────────────────────────────────────────────────────────

const Defaults = table({
  connect_timeout: v.optional(duration()),
  idle_timeout: v.optional(duration()),
  drain_timeout: v.optional(duration()),
  queue_timeout: v.optional(duration()),
  resolve_interval: v.optional(resolveInterval),
});

/** `[[listeners.routes]]`: server_names and/or alpn → backend (checked in `checkListener`). */
const Route = v.pipe(
  table(
    { server_names: v.optional(serverNames("expected at least one name (leave server_names out to match by alpn alone)")), alpn: v.optional(alpnList), backend: name },
    { backend: "the name of the backend for clients this route matches" },
    'a table such as { server_names = ["db.example.com"], backend = "db" }',
  ),
  v.transform((r): RouteConfig => ({ serverNames: r.server_names ?? [], alpn: r.alpn ?? [], backend: r.backend })),
);

function certificate(what: string) {
  return v.pipe(
    table(
      { cert: filePath, key: filePath, names: v.optional(serverNames("expected at least one name (leave names out to use the certificate's own)")) },
      { cert: "the certificate chain file, PEM", key: "the private key file, PEM" },
      what,
    ),
    v.transform((c): ListenerCertificate => ({ cert: c.cert, key: c.key, names: c.names ?? [] })),
  );
}

/** `tls = { cert, key }`, or a list of them chosen by SNI (names filled in by `withFiles`). */
const ListenerTls = v.pipe(
  v.lazy((input) =>
    Array.isArray(input)
      ? v.pipe(v.array(certificate('a table such as { cert = "cert.pem", key = "key.pem" }')), v.minLength(1, "expected at least one certificate"))
      : certificate('a table such as { cert = "cert.pem", key = "key.pem" }, or a list of them'),
  ),
  v.transform((t): ListenerTlsConfig => ({ certificates: Array.isArray(t) ? t : [t] })),
);

/** Which keys go with which mode, and `backend` being required in tcp mode, are in `checkListener`. */
const Listener = table(
  {
    name: v.optional(name),
    listen: address(true),
    mode: v.optional(mode),
    backend: v.optional(name),
    routes: v.optional(v.array(Route, expected("an array of tables ([[listeners.routes]])"))),
    hello_timeout: v.optional(duration(true)),
    accept_proxy: v.optional(boolean),
    trusted: v.optional(cidrList(1, 'expected at least one range (the proxies in front, e.g. ["127.0.0.1/32"])')),
    allow: v.optional(cidrList(0)),
    deny: v.optional(cidrList(0)),
    max_connections_per_ip: v.optional(count(0)),
    connection_rate_per_ip: v.optional(count(0)),
    tls: v.optional(ListenerTls),
    max_connections: v.optional(count(0)),
    connect_timeout: v.optional(duration()),
    idle_timeout: v.optional(duration()),
  },
  { listen: 'the address to listen on, e.g. "127.0.0.1:11000"' },
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

/** `tls = {}` dials over TLS, verifying against the system CAs and the target's host name. */
const BackendTls = v.pipe(
  table(
    { servername: v.optional(sendServerName), ca: v.optional(filePath), verify: v.optional(boolean) },
    {},
    'a table such as { servername = "db.example.com", ca = "ca.pem" }',
  ),
  v.transform((t): BackendTlsConfig => ({ serverName: t.servername ?? null, ca: t.ca ?? null, verify: t.verify ?? true })),
);

const Backend = table(
  {
    balance: v.optional(balance),
    retries: v.optional(count(0)),
    targets: v.pipe(v.array(Target, expected('a list of targets such as ["127.0.0.1:6379"]')), v.minLength(1, "expected at least one target")),
    health: v.optional(Health),
    resolve_interval: v.optional(resolveInterval),
    send_proxy: v.optional(sendProxy),
    tls: v.optional(BackendTls),
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
      dns_servers: v.optional(dnsServers),
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
      mode: l.mode ?? "tcp",
      backend: l.backend ?? null,
      routes: l.routes ?? [],
      helloTimeout: l.hello_timeout ?? CONFIG_DEFAULTS.helloTimeout,
      acceptProxy: l.accept_proxy ?? false,
      trusted: l.trusted ?? [],
      allow: l.allow ?? [],
      deny: l.deny ?? [],
      maxConnectionsPerIp: l.max_connections_per_ip ?? 0,
      connectionRatePerIp: l.connection_rate_per_ip ?? 0,
      tls: l.tls ?? null,
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
        resolveInterval: b.resolve_interval ?? d?.resolve_interval ?? CONFIG_DEFAULTS.resolveInterval,
        sendProxy: b.send_proxy === undefined || b.send_proxy === "off" ? null : b.send_proxy,
        tls: b.tls ?? null,
      });
    }
    const config: Config = { defaults, listeners, backends };
    if (file.admin !== undefined) config.admin = { listen: file.admin.listen };
    if (file.access_log !== undefined && file.access_log !== "off") config.accessLog = file.access_log;
    if (file.dns_servers !== undefined) config.dnsServers = file.dns_servers;
    return config;
  }),
);
