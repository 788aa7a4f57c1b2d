/**
 * The config checks that span sections (references between listeners, routes and backends;
 * duplicates) and the files it names (TLS certificates, keys and CAs, read at load).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type * as v from "valibot";
import { formatAddress, type Address } from "../util/address.ts";
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
