/**
 * The config file: TOML (or JSON, by extension) → a fully resolved `Config`, defaults applied,
 * durations in ms, addresses parsed. Every error is found in one pass and reported as one line
 * that starts with its path: `listeners[1].backend: unknown backend "cache"`.
 *
 * Each section has one schema in config-schema.ts (valibot), made of the value schemas in
 * config-values.ts; a new section or key is one entry there plus one line in its transform. Relations between sections (references, duplicates) are checked
 * once, in `checkReferences` (config-checks.ts). Annotated references: test/fixtures/config/example.toml
 * and tls.toml.
 */
import { dirname, resolve } from "node:path";
import * as v from "valibot";
import type { Address } from "../util/address.ts";
import type { Balance } from "../backend/balancer.ts";
import { checkFiles, withFiles } from "./checks.ts";
import { at, tomlErrorLine } from "./messages.ts";
import { ConfigSchema } from "./schema.ts";
import type { HealthConfig } from "../backend/health.ts";

export { CONFIG_DEFAULTS } from "./schema.ts";
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
 * `alpn` is non-empty; with both, both must match. Precedence (src/protocol/sni.ts): exact name, then
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
