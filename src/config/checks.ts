/**
 * The config checks that span sections (references between listeners, routes and backends;
 * duplicates) and the files it names (TLS certificates, keys and CAs, read at load).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type * as v from "valibot";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { formatAddress, formatHostPort, type Address } from "../util/address.ts";
import { DEFAULTS } from "./defaults.ts";
import { isAddress, isRecord, pathText } from "./messages.ts";
import { parseServerNamePattern } from "../protocol/sni.ts";
import type { Config, RouteConfig, TlsPolicy } from "./types.ts";
import { Secret } from "../util/secret.ts";

// ── Relations between sections ─────────────────────────────────────────────────────────────

export type Key = string | number;

/**
 * Unique listener names and listen addresses, known backends, unique targets per backend.
 * Runs on the partly validated file: a value that has an error of its own is skipped.
 */
export function checkReferences(file: unknown, issues: readonly v.BaseIssue<unknown>[]): { path: Key[]; message: string }[] {
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
      // a UDP and a TCP listener may share an address (DNS serves both on port 53)
      const key = (listener.protocol === "udp" ? "udp " : "") + identity(address);
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
    for (const { path, message } of checkListener(listener, (...path) => valid("listeners", i, ...path), backends)) {
      errors.push({ path: ["listeners", i, ...path], message });
    }
  });

  if (isRecord(file.admin) && valid("admin", "listen") && isAddress(file.admin.listen)) {
    const first = addresses.get(identity(file.admin.listen));
    if (first !== undefined && !(file.admin.listen.kind === "tcp" && file.admin.listen.port === 0)) {
      errors.push({ path: ["admin", "listen"], message: `${formatAddress(file.admin.listen)} is already used by listeners[${first}]` });
    }
  }

  for (const [name, backend] of Object.entries(backends ?? {})) {
    if (isRecord(backend) && backend.targets === undefined && backend.sentinel === undefined)
      errors.push({ path: ["backends", name, "targets"], message: 'missing (a list of addresses such as ["127.0.0.1:6379"])' });
    if (isRecord(backend) && isRecord(backend.health) && backend.health.tls === true && backend.tls === undefined)
      errors.push({
        path: ["backends", name, "health", "tls"],
        message: "only for a backend with tls (its checks then use TLS by default; tls = false checks in plain TCP)",
      });
    if (isRecord(backend) && backend.max_fails !== undefined && backend.health !== undefined)
      errors.push({ path: ["backends", name, "max_fails"], message: "not with health (with active checks a failed connect counts toward fall)" });
    if (isRecord(backend) && backend.targets !== undefined && backend.sentinel !== undefined)
      errors.push({ path: ["backends", name, "targets"], message: "not with sentinel (the sentinels name the target)" });
    if (isRecord(backend)) for (const message of tcpOptionsOnTls(backend)) errors.push({ path: ["backends", name, message.key], message: message.text });
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

/**
 * The keys of one listener that go together: `backend` is required in tcp mode; `routes` is
 * for sni mode, `tls` for tcp mode; `hello_timeout` for sni mode, tls or accept_proxy; `trusted`
 * goes with `accept_proxy`.
 * Each route matches on something, names a known backend, and can be reached.
 */
export function checkListener(
  listener: Record<string, unknown>,
  valid: (...path: Key[]) => boolean,
  backends: Record<string, unknown> | null,
): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  const has = (key: string) => listener[key] !== undefined;
  if (valid("mode")) {
    if (listener.mode === "sni") {
      if (has("tls"))
        errors.push({ path: ["tls"], message: 'not allowed with mode = "sni" (SNI passthrough forwards TLS unchanged; to terminate TLS use mode = "tcp")' });
      const routes = listener.routes;
      if (!has("backend") && valid("routes") && (!Array.isArray(routes) || routes.length === 0)) {
        errors.push({ path: ["routes"], message: "missing (an sni listener needs [[listeners.routes]], a backend for the clients no route takes, or both)" });
      }
    } else {
      if (!has("backend")) errors.push({ path: ["backend"], message: "missing (the name of the backend to forward to)" });
      if (has("routes") && !verifiesClients(listener))
        errors.push({
          path: ["routes"],
          message: 'only for mode = "sni", or routes by client certificate on a listener with tls and tls_policy.verify_client',
        });
      if (has("hello_timeout") && listener.accept_proxy !== true && !has("tls"))
        errors.push({ path: ["hello_timeout"], message: 'only for mode = "sni", tls or accept_proxy = true (a plain listener reads nothing before it dials)' });
    }
  }
  if (valid("accept_proxy") && valid("trusted")) {
    if (listener.accept_proxy === true && !has("trusted")) {
      errors.push({ path: ["trusted"], message: 'missing (the addresses allowed to send a PROXY header, e.g. ["127.0.0.1/32"])' });
    } else if (listener.accept_proxy !== true && has("trusted")) {
      errors.push({ path: ["trusted"], message: "only used with accept_proxy = true" });
    }
  }
  for (const message of tcpOptionsOnTls(listener)) errors.push({ path: [message.key], message: message.text });
  if (has("tls_policy") && !has("tls") && valid("tls_policy"))
    errors.push({ path: ["tls_policy"], message: "only with tls (the policy of a listener that terminates TLS)" });
  const policy = isRecord(listener.tls_policy) ? (listener.tls_policy as unknown as TlsPolicy) : null;
  if (policy !== null && valid("tls_policy") && policy.verifyClient !== "off" && policy.clientCa === null)
    errors.push({
      path: ["tls_policy", "client_ca"],
      message: `missing (verify_client = "${policy.verifyClient}" needs the CA file client certificates are checked against)`,
    });
  if (!Array.isArray(listener.routes)) return errors;
  /** Exact names and wildcards already taken by a route with no alpn: a later route cannot get them. */
  const taken = new Map<string, number>();
  (listener.routes as unknown[]).forEach((route, j) => {
    if (!valid("routes", j) || !isRecord(route)) return;
    const { serverNames, alpn, backend, client } = route as unknown as RouteConfig;
    if (backends !== null && !Object.hasOwn(backends, backend)) errors.push({ path: ["routes", j, "backend"], message: `unknown backend "${backend}"` });
    if (listener.mode !== "sni") {
      if (serverNames.length > 0 || alpn.length > 0)
        errors.push({
          path: ["routes", j],
          message: 'server_names and alpn are for mode = "sni"; a terminating listener routes by client_subject, client_cn or client_fingerprint',
        });
      else if (client === undefined)
        errors.push({
          path: ["routes", j],
          message: "expected client_subject, client_cn or client_fingerprint (the listener's backend takes the clients no route matches)",
        });
      return;
    }
    if (client !== undefined)
      errors.push({
        path: ["routes", j],
        message:
          'client_subject, client_cn and client_fingerprint need a listener that terminates TLS and verifies clients (mode = "tcp", tls, tls_policy.verify_client)',
      });
    if (serverNames.length === 0 && alpn.length === 0) {
      errors.push({ path: ["routes", j], message: "expected server_names, alpn or both (the listener's backend takes the clients no route matches)" });
    }
    serverNames.forEach((name, k) => {
      const first = taken.get(name);
      if (first !== undefined && first !== j)
        errors.push({ path: ["routes", j, "server_names", k], message: `"${name}" is already taken by routes[${first}], which matches any alpn` });
      else if (alpn.length === 0) taken.set(name, j);
    });
  });
  return errors;
}

/** tcp_keepalive and tcp_user_timeout need a plain socket: Bun gives no descriptor for a TLS socket (fd -1) to set them on. */
function tcpOptionsOnTls(section: Record<string, unknown>): { key: string; text: string }[] {
  if (section.tls === undefined) return [];
  return ["tcp_keepalive", "tcp_user_timeout"]
    .filter((key) => section[key] !== undefined && section[key] !== null && section[key] !== 0) // "off" is fine
    .map((key) => ({ key, text: "not with tls (TCP options apply to plain sockets: Bun gives no descriptor for a TLS socket)" }));
}

/** A tcp listener with tls and a tls_policy that asks for client certificates (as parsed, or still raw). */
function verifiesClients(listener: Record<string, unknown>): boolean {
  const policy = listener.tls_policy;
  if (listener.tls === undefined || !isRecord(policy)) return false;
  const verify = (policy as { verifyClient?: unknown; verify_client?: unknown }).verifyClient ?? policy.verify_client;
  return verify === "required" || verify === "optional" || (verify === undefined && (policy.clientCa ?? policy.client_ca) != null);
}

/** Two addresses that bind or dial the same thing (hostnames compared without resolving them). */
export function identity(address: Address): string {
  return address.kind === "unix" ? `unix:${address.path}` : formatAddress({ ...address, host: address.host.toLowerCase() });
}

// ── Files ──────────────────────────────────────────────────────────────────────────────────

/**
 * The TLS files a config names, read now so that a typo fails `check` and start-up rather than
 * the first handshake: listener certificates and keys (PEM, the key matching the certificate)
 * and backend CA bundles (PEM), and the admin token file. Runs on the raw file; a value with an
 * error of its own is skipped.
 */
export function checkFiles(file: unknown, base: string): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  if (!isRecord(file)) return errors;
  const path = (value: unknown) => (typeof value === "string" && value !== "" ? resolve(base, value) : null);
  const listeners = Array.isArray(file.listeners) ? file.listeners : [];
  listeners.forEach((listener: unknown, i) => {
    if (!isRecord(listener)) return;
    const list = Array.isArray(listener.tls) ? listener.tls : [listener.tls];
    list.forEach((tls: unknown, j) => {
      if (!isRecord(tls)) return;
      const at: Key[] = Array.isArray(listener.tls) ? ["listeners", i, "tls", j] : ["listeners", i, "tls"];
      const certPath = path(tls.cert);
      const keyPath = path(tls.key);
      const cert = certPath === null ? null : readPem(certPath, "certificate", [...at, "cert"], errors);
      const key = keyPath === null ? null : readPem(keyPath, "private key", [...at, "key"], errors);
      if (cert instanceof X509Certificate && key !== null && !(key instanceof X509Certificate) && !cert.checkPrivateKey(key)) {
        errors.push({ path: [...at, "key"], message: `${keyPath} is not the key of the certificate in ${certPath}` });
      }
    });
  });
  listeners.forEach((listener: unknown, i) => {
    const policy = isRecord(listener) && isRecord(listener.tls_policy) ? listener.tls_policy : null;
    const caPath = policy === null ? null : path(policy.client_ca);
    if (caPath !== null) readPem(caPath, "certificate", ["listeners", i, "tls_policy", "client_ca"], errors);
  });
  const tokenPath = isRecord(file.admin) ? path(file.admin.token_file) : null;
  if (tokenPath !== null) {
    try {
      readToken(tokenPath);
    } catch (error) {
      errors.push({ path: ["admin", "token_file"], message: (error as Error).message });
    }
  }
  const adminTls = isRecord(file.admin) && isRecord(file.admin.tls) ? file.admin.tls : null;
  if (adminTls !== null) {
    const certPath = path(adminTls.cert);
    const keyPath = path(adminTls.key);
    const cert = certPath === null ? null : readPem(certPath, "certificate", ["admin", "tls", "cert"], errors);
    const key = keyPath === null ? null : readPem(keyPath, "private key", ["admin", "tls", "key"], errors);
    if (cert instanceof X509Certificate && key !== null && !(key instanceof X509Certificate) && !cert.checkPrivateKey(key))
      errors.push({ path: ["admin", "tls", "key"], message: `${keyPath} is not the key of the certificate in ${certPath}` });
    const caPath = path(adminTls.client_ca);
    if (caPath !== null) readPem(caPath, "certificate", ["admin", "tls", "client_ca"], errors);
  }
  for (const [name, backend] of Object.entries(isRecord(file.backends) ? file.backends : {})) {
    const auth = isRecord(backend) && isRecord(backend.health) && isRecord(backend.health.auth) ? backend.health.auth : null;
    const sentinelAuth = isRecord(backend) && isRecord(backend.sentinel) && isRecord(backend.sentinel.auth) ? backend.sentinel.auth : null;
    for (const [at, value] of [
      ["health", auth],
      ["sentinel", sentinelAuth],
    ] as const) {
      const passwordPath = value === null ? null : path(value.password_file);
      if (passwordPath === null) continue;
      try {
        readSecret(passwordPath);
      } catch (error) {
        errors.push({ path: ["backends", name, at, "auth", "password_file"], message: (error as Error).message });
      }
    }
    if (!isRecord(backend) || !isRecord(backend.tls)) continue;
    const caPath = path(backend.tls.ca);
    if (caPath !== null) readPem(caPath, "certificate", ["backends", name, "tls", "ca"], errors);
    const certPath = path(backend.tls.cert);
    const keyPath = path(backend.tls.key);
    const cert = certPath === null ? null : readPem(certPath, "certificate", ["backends", name, "tls", "cert"], errors);
    const key = keyPath === null ? null : readPem(keyPath, "private key", ["backends", name, "tls", "key"], errors);
    if (cert instanceof X509Certificate && key !== null && !(key instanceof X509Certificate) && !cert.checkPrivateKey(key))
      errors.push({ path: ["backends", name, "tls", "key"], message: `${keyPath} is not the key of the certificate in ${certPath}` });
  }
  return errors;
}

/**
 * The admin token in a file, without surrounding whitespace (a trailing newline). Throws a
 * one-line message (`cannot read /etc/x: no such file`, `/etc/x is empty`).
 */
export function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read ${path}: ${readErrorText(error)}`);
  }
  // As ssh does with keys: a secret others can read is refused rather than used.
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new Error(`${path} is readable by others (mode ${mode.toString(8).padStart(4, "0")}): chmod 600 it`);
  const token = text.trim();
  if (token === "") throw new Error(`${path} is empty (expected the admin token)`);
  if (/\s/.test(token)) throw new Error(`${path} holds more than one word (expected the admin token alone)`);
  return token;
}

/** A password in a file, without surrounding whitespace. Throws a one-line message that never shows the password. */
export function readSecret(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read ${path}: ${readErrorText(error)}`);
  }
  const secret = text.trim();
  if (secret === "") throw new Error(`${path} is empty (expected the password)`);
  return secret;
}

function readErrorText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (error as Error).message;
}

export function readPem(
  path: string,
  kind: "certificate" | "private key",
  at: Key[],
  errors: { path: Key[]; message: string }[],
): X509Certificate | KeyObject | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (error as Error).message;
    errors.push({ path: at, message: `cannot read ${path}: ${reason}` });
    return null;
  }
  try {
    return kind === "certificate" ? new X509Certificate(text) : createPrivateKey(text);
  } catch {
    const hint = kind === "private key" && text.includes("ENCRYPTED") ? " (encrypted keys are not supported)" : "";
    errors.push({ path: at, message: `${path} is not a PEM ${kind}${hint}` });
    return null;
  }
}

/**
 * The config with every TLS file path made absolute, relative to `base`, and each listener
 * certificate's server names filled in from the certificate where the config gave none.
 */
export function withFiles(config: Config, base: string): Config {
  for (const listener of config.listeners) {
    if (listener.tls === null) continue;
    const policy = listener.tls.policy;
    listener.tls = {
      certificates: listener.tls.certificates.map((c) => {
        const cert = resolve(base, c.cert);
        return { ...c, cert, key: resolve(base, c.key), names: c.names.length > 0 ? c.names : certificateNames(readFileSync(cert, "utf8")) };
      }),
      ...(policy ? { policy: { ...policy, clientCa: policy.clientCa === null ? null : resolve(base, policy.clientCa) } } : {}),
    };
  }
  for (const backend of config.backends.values()) {
    if (backend.tls?.ca != null) backend.tls = { ...backend.tls, ca: resolve(base, backend.tls.ca) };
    if (backend.tls?.cert != null && backend.tls.key != null)
      backend.tls = { ...backend.tls, cert: resolve(base, backend.tls.cert), key: resolve(base, backend.tls.key) };
    const auth = backend.health?.auth;
    if (auth?.password.source.startsWith("file ")) {
      const file = resolve(base, auth.password.source.slice(5));
      backend.health!.auth = { ...auth, password: new Secret(readSecret(file), `file ${file}`) };
    }
  }
  for (const backend of config.backends.values()) {
    const auth = backend.sentinel?.auth;
    if (auth?.password.source.startsWith("file ")) {
      const file = resolve(base, auth.password.source.slice(5));
      backend.sentinel!.auth = { ...auth, password: new Secret(readSecret(file), `file ${file}`) };
    }
  }
  if (config.admin?.tokenFile != null) config.admin.tokenFile = resolve(base, config.admin.tokenFile);
  const adminTls = config.admin?.tls;
  if (adminTls != null)
    config.admin!.tls = {
      cert: resolve(base, adminTls.cert),
      key: resolve(base, adminTls.key),
      clientCa: adminTls.clientCa === null ? null : resolve(base, adminTls.clientCa),
    };
  return config;
}

/**
 * The server names a PEM certificate is for: its DNS subjectAltNames, else its subject CN, as
 * server-name patterns (lower case; `*.example.com`). Names that are not DNS names are skipped.
 */
function certificateNames(pem: string): string[] {
  const cert = new X509Certificate(pem);
  const dns = (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4));
  const names = dns.length > 0 ? dns : [/(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1] ?? ""];
  const patterns: string[] = [];
  for (const name of names) {
    try {
      const pattern = parseServerNamePattern(name);
      if (!patterns.includes(pattern)) patterns.push(pattern);
    } catch {
      // an IP address or a CN that is not a host name: never a server name
    }
  }
  return patterns;
}

// ── Addresses once resolved ────────────────────────────────────────────────────────────────

/** Looks a host name up as a bind does (the first address); null when it does not resolve. */
export type HostLookup = (host: string) => Promise<string | null>;

const systemLookup: HostLookup = async (host) => {
  const timeout = new Promise<null>((resolve) => setTimeout(resolve, DEFAULTS.discovery.lookupTimeout, null).unref());
  const found = lookup(host).then(
    (answer) => answer.address,
    () => null,
  );
  return await Promise.race([found, timeout]);
};

/**
 * Listen addresses (listeners and `[admin] listen`) that name the same socket once host names
 * are resolved, or that overlap a wildcard on the same port (`0.0.0.0:P` takes every IPv4
 * address, `[::]:P` every address): `listeners[1].listen: localhost:7000 is 127.0.0.1:7000,
 * which listeners[0] already listens on`. The bind would fail with "address already in use",
 * which reads as if another program held the port. Async (it resolves names), so it runs after
 * the synchronous validation: in `check` and in `serve` before anything is bound. Addresses
 * that are the same as written are reported by `checkReferences`; names that do not resolve
 * are left to the bind.
 */
export async function checkAddressClashes(config: Config, resolveHost: HostLookup = systemLookup): Promise<string[]> {
  const entries: { at: string; owner: string; address: Address; udp?: boolean }[] = config.listeners.map((listener, i) => ({
    at: `listeners[${i}].listen`,
    owner: `listeners[${i}]`,
    address: listener.listen,
    // a UDP socket never clashes with a TCP one on the same address
    ...(listener.protocol === "udp" ? { udp: true } : {}),
  }));
  if (config.admin !== undefined) entries.push({ at: "admin.listen", owner: "the admin", address: config.admin.listen });
  const resolved = await Promise.all(
    entries.map(async (entry) => {
      const { address } = entry;
      if (address.kind !== "tcp" || address.port === 0) return null;
      const ip = isIP(address.host) !== 0 ? address.host : await resolveHost(address.host);
      return ip === null ? null : { ...entry, ip: ip.toLowerCase(), port: address.port };
    }),
  );
  const errors: string[] = [];
  const seen: { owner: string; ip: string; port: number; text: string; udp: boolean }[] = [];
  for (const entry of resolved) {
    if (entry === null) continue;
    const text = formatAddress(entry.address);
    const udp = entry.udp === true;
    const same = seen.find((other) => other.port === entry.port && other.ip === entry.ip && other.udp === udp);
    const overlap = seen.find((other) => other.port === entry.port && other.udp === udp && overlaps(other.ip, entry.ip));
    if (same !== undefined && same.text.toLowerCase() !== text.toLowerCase()) {
      const resolvedText = formatHostPort(entry.ip, entry.port);
      const what = resolvedText === text ? `${text} is ${same.text}` : `${text} is ${resolvedText}`;
      errors.push(`${entry.at}: ${what}, which ${same.owner} already listens on`);
    } else if (same === undefined && overlap !== undefined) {
      errors.push(`${entry.at}: ${text} overlaps ${overlap.text}, which ${overlap.owner} already listens on (${wildcardWords(overlap.ip, entry.ip)})`);
    }
    if (same === undefined) seen.push({ owner: entry.owner, ip: entry.ip, port: entry.port, text, udp });
  }
  return errors;
}

const IPV4_ANY = "0.0.0.0";
const IPV6_ANY = "::";

/** Two different IPs whose binds on one port collide: one is a wildcard that covers the other (`::` is dual-stack). */
function overlaps(a: string, b: string): boolean {
  const covers = (wildcard: string, ip: string) => (wildcard === IPV6_ANY ? true : wildcard === IPV4_ANY && isIP(ip) === 4);
  return a !== b && (covers(a, b) || covers(b, a));
}

function wildcardWords(a: string, b: string): string {
  const wildcard = a === IPV6_ANY || (a === IPV4_ANY && b !== IPV6_ANY) ? a : b;
  return wildcard === IPV6_ANY ? ":: listens on every address of this machine, IPv4 too" : "0.0.0.0 listens on every IPv4 address of this machine";
}

/**
 * SRV targets (`{ srv = "…" }`): each name once per backend, and no hostname target next to
 * them (each name's source replaces the backend's targets when its answer changes, so a backend
 * follows one kind of name). Runs on the partly validated file.
 */
export function checkSrvTargets(file: unknown, issues: readonly v.BaseIssue<unknown>[]): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  const invalid = new Set(issues.map((issue) => pathText(issue.path)));
  const backends = isRecord(file) && isRecord(file.backends) ? file.backends : {};
  for (const [name, backend] of Object.entries(backends)) {
    if (!isRecord(backend) || !Array.isArray(backend.targets)) continue;
    const targets = backend.targets as unknown[];
    const valid = (j: number) => !invalid.has(pathText([{ key: "backends" }, { key: name }, { key: "targets" }, { key: j }]));
    const srv = new Map<string, number>();
    targets.forEach((target, j) => {
      if (!isRecord(target) || typeof target.srv !== "string" || !valid(j)) return;
      const first = srv.get(target.srv);
      if (first === undefined) srv.set(target.srv, j);
      else errors.push({ path: ["backends", name, "targets", j], message: `srv "${target.srv}" is already listed as targets[${first}]` });
    });
    if (srv.size === 0) continue;
    const [first] = srv.values();
    targets.forEach((target, j) => {
      if (!isRecord(target) || !isAddress(target.address) || target.address.kind !== "tcp" || isIP(target.address.host) !== 0) return;
      errors.push({
        path: ["backends", name, "targets", j],
        message: `a hostname target cannot share a backend with srv targets (targets[${first}]): list its addresses, or give it a backend of its own`,
      });
    });
  }
  return errors;
}

// ── UDP listeners ──────────────────────────────────────────────────────────────────────────

/** Keys of a TCP listener a UDP listener refuses, and why (one error each, at the key's path). */
const TCP_ONLY_KEYS: Record<string, string> = {
  tls: 'TLS runs over TCP; QUIC is routed by its server name with mode = "sni"',
  tls_policy: "TLS runs over TCP",
  accept_proxy: "a UDP listener reads no PROXY header",
  trusted: "a UDP listener reads no PROXY header",
  max_connections: "use max_flows",
  max_connections_per_ip: "use max_flows_per_ip",
  connection_rate_per_ip: "use max_flows_per_ip",
  connect_timeout: "a UDP flow does not connect",
  write_timeout: "datagrams are never queued for a slow reader",
  half_closed_timeout: "a flow has no half-close; it ends after idle_timeout or responses",
  max_session_duration: "a flow ends after idle_timeout or responses",
  upload_rate: "bandwidth limits pause a TCP socket",
  download_rate: "bandwidth limits pause a TCP socket",
  upload_rate_per_ip: "bandwidth limits pause a TCP socket",
  download_rate_per_ip: "bandwidth limits pause a TCP socket",
  tcp_keepalive: "a TCP socket option",
  tcp_user_timeout: "a TCP socket option",
};
const UDP_ONLY_KEYS = ["max_flows", "max_flows_per_ip", "responses"];
/** Backend keys that have no meaning for datagrams. */
const TCP_BACKEND_KEYS: Record<string, string> = {
  tls: "datagrams are forwarded as they are (no DTLS)",
  upload_rate: "bandwidth limits pause a TCP socket",
  download_rate: "bandwidth limits pause a TCP socket",
  upload_rate_per_ip: "bandwidth limits pause a TCP socket",
  download_rate_per_ip: "bandwidth limits pause a TCP socket",
  tcp_keepalive: "a TCP socket option",
  tcp_user_timeout: "a TCP socket option",
};

/**
 * `protocol = "udp"` listeners: no TCP-only key, a host:port address, an idle timeout; the UDP
 * keys only on them; their backends serve no TCP listener, dial no TLS, send no PROXY v1, and
 * check over UDP with a reply to expect. Runs on the partly validated file.
 */
export function checkUdp(file: unknown, issues: readonly v.BaseIssue<unknown>[]): { path: Key[]; message: string }[] {
  const errors: { path: Key[]; message: string }[] = [];
  if (!isRecord(file) || !Array.isArray(file.listeners)) return errors;
  const invalid = issues.map((issue) => pathText(issue.path));
  const valid = (...path: Key[]) => {
    const prefix = pathText(path.map((key) => ({ key })));
    return !invalid.some((bad) => bad === prefix || bad.startsWith(prefix + ".") || bad.startsWith(prefix + "["));
  };
  const backends = isRecord(file.backends) ? file.backends : {};
  /** Backend name → the first listener using it, by protocol. */
  const users = new Map<string, { tcp?: number; udp?: number }>();
  (file.listeners as unknown[]).forEach((listener, i) => {
    if (!isRecord(listener)) return;
    const udp = listener.protocol === "udp";
    const names = [listener.backend, ...(Array.isArray(listener.routes) ? listener.routes.map((route) => (isRecord(route) ? route.backend : undefined)) : [])];
    for (const name of names) {
      if (typeof name !== "string") continue;
      const use = users.get(name) ?? {};
      if (udp) use.udp ??= i;
      else use.tcp ??= i;
      users.set(name, use);
    }
    if (!udp) {
      for (const key of UDP_ONLY_KEYS) if (listener[key] !== undefined) errors.push({ path: ["listeners", i, key], message: 'only with protocol = "udp"' });
      return;
    }
    for (const [key, why] of Object.entries(TCP_ONLY_KEYS))
      if (listener[key] !== undefined) errors.push({ path: ["listeners", i, key], message: `not with protocol = "udp" (${why})` });
    if (isAddress(listener.listen) && listener.listen.kind === "unix")
      errors.push({ path: ["listeners", i, "listen"], message: 'a UDP listener needs host:port (protocol = "udp")' });
    if (listener.idle_timeout === 0 && valid("listeners", i, "idle_timeout"))
      errors.push({
        path: ["listeners", i, "idle_timeout"],
        message: `cannot be off on a UDP listener (a UDP peer never says it is done; default ${DEFAULTS.udp.idleTimeout / 1000}s)`,
      });
  });
  for (const [name, use] of users) {
    if (use.udp === undefined) continue;
    const where = `listeners[${use.udp}]`;
    if (use.tcp !== undefined)
      errors.push({
        path: ["listeners", use.udp, "backend"],
        message: `backend "${name}" also serves listeners[${use.tcp}] (tcp): a backend serves TCP or UDP listeners, not both (checks and PROXY headers differ); give each its own`,
      });
    const backend = backends[name];
    if (!isRecord(backend)) continue;
    for (const [key, why] of Object.entries(TCP_BACKEND_KEYS))
      if (backend[key] !== undefined) errors.push({ path: ["backends", name, key], message: `not for a backend of UDP listeners (${where}): ${why}` });
    if (backend.send_proxy === "v1")
      errors.push({ path: ["backends", name, "send_proxy"], message: `PROXY v1 has no UDP; use "v2" (a backend of UDP listeners: ${where})` });
    const health = backend.health;
    if (!isRecord(health) || !valid("backends", name, "health")) continue;
    const at = (key: string) => ["backends", name, "health", key];
    if (health.http != null) errors.push({ path: at("type"), message: `not "http" for a backend of UDP listeners (${where}): checks there send datagrams` });
    if (health.tls !== undefined) errors.push({ path: at("tls"), message: `not for a backend of UDP listeners (${where})` });
    if (health.auth != null) errors.push({ path: at("auth"), message: `not for a backend of UDP listeners (${where}): AUTH is a Redis command over TCP` });
    const steps = Array.isArray(health.steps) ? (health.steps as unknown[]) : [];
    if (health.http == null && health.expect == null && !steps.some((step) => isRecord(step) && "expect" in step))
      errors.push({
        path: ["backends", name, "health"],
        message: `a check over UDP needs a reply to expect (a UDP target says nothing until asked): give steps such as [{ send_hex = "…" }, { expect_hex = "…" }] (${where})`,
      });
  }
  return errors;
}
