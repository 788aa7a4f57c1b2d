/**
 * The files a config names, read at load so that a typo fails `check` and start-up rather than
 * the first handshake: listener certificates and keys, CA bundles, client certificates, the
 * admin token file (never readable by others) and secrets' files; `withFiles` puts their
 * contents and absolute paths into the resolved config.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { isRecord } from "./messages.ts";
import type { Config } from "./types.ts";
import { Secret } from "../util/secret.ts";
import { parseServerNamePattern } from "../protocol/sni.ts";
import type { Key } from "./checks.ts";

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
