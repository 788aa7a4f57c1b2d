import type * as v from "valibot";
import { formatAddress, type Address } from "../util/address.ts";
import { DEFAULTS } from "./defaults.ts";
import { isAddress, isRecord, pathText } from "./messages.ts";
import type { RouteConfig, TlsPolicy } from "./types.ts";

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

/** SRV targets (`{ srv = "…" }`): each name once per backend. Runs on the partly validated file. */
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
  }
  return errors;
}

// ── UDP listeners ──────────────────────────────────────────────────────────────────────────

/** Session controls of TCP sockets, on listeners and backends alike: no meaning for datagrams. */
const TCP_CONTROL_KEYS: Record<string, string> = {
  upload_rate: "bandwidth limits pause a TCP socket",
  download_rate: "bandwidth limits pause a TCP socket",
  upload_rate_per_ip: "bandwidth limits pause a TCP socket",
  download_rate_per_ip: "bandwidth limits pause a TCP socket",
  tcp_keepalive: "a TCP socket option",
  tcp_user_timeout: "a TCP socket option",
};
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
  ...TCP_CONTROL_KEYS,
};
const UDP_ONLY_KEYS = ["max_flows", "max_flows_per_ip", "responses"];
/** Backend keys that have no meaning for datagrams. */
const TCP_BACKEND_KEYS: Record<string, string> = {
  tls: "datagrams are forwarded as they are (no DTLS)",
  ...TCP_CONTROL_KEYS,
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
