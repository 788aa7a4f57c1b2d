/**
 * `tcprouter check --config FILE`: validates a config file and prints what it would serve,
 * without binding or dialling anything.
 *
 * A valid file prints the plan on stdout (warnings on stderr) and exits 0. An invalid one
 * prints every error on stderr, one `FILE: path: message` line each, and exits 1. Those lines
 * are written here rather than thrown: the CLI's error path writes one log line (timestamp,
 * level) per error, which would wrap a list of errors in a single entry.
 */
import { defineCommand } from "citty";
import { formatAddress } from "../util/address.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { ConfigError, configWarnings, loadConfig, type BackendConfig, type Config, type ListenerConfig, type TargetConfig } from "../config/load.ts";
import { formatDuration } from "../util/duration.ts";
import { formatSize } from "../util/size.ts";
import { checkSteps, describeStep } from "../backend/health/check-steps.ts";
import { describeSource } from "../backend/sources/all.ts";
import type { HealthConfig, ListenerCertificate, SessionControls, TlsPolicy } from "../config/types.ts";
import type { SrvTargetConfig } from "../config/types.ts";
import { UsageError } from "./args.ts";
import { checkAddressClashes } from "../config/address-clash.ts";

export const configArgs = {
  config: {
    type: "string",
    alias: "c",
    description: "Config file (.toml or .json): listeners, backends, targets; replaces --listen/--to and the timeout flags",
  },
} as const;

export default defineCommand({
  meta: { name: "check", description: "Validate a config file and print its listeners, backends and targets" },
  args: configArgs,
  async run({ args }) {
    if (!args.config) throw new UsageError("--config is required: the file to check, e.g. --config tcprouter.toml");
    let config: Config;
    try {
      config = await loadConfig(args.config);
      const clashes = await checkAddressClashes(config); // names resolved: the one lookup check makes
      if (clashes.length > 0) throw new ConfigError(args.config, clashes);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      for (const line of error.errors) process.stderr.write(`${error.source}: ${line}\n`);
      process.exitCode = 1;
      return;
    }
    for (const warning of configWarnings(config)) process.stderr.write(`${args.config}: warning: ${warning}\n`);
    process.stdout.write(renderPlan(config));
  },
});

/**
 * One line for the defaults, then per listener its backend and the backend's targets:
 * `listener redis 127.0.0.1:11000 → backend redis (least-conn, retries 2, health: send/expect every 2s)`.
 * An sni listener has one line per route and one for its default, each followed by the
 * backend's targets. A listener's own values are shown where they differ from the defaults.
 */
export function renderPlan(config: Config): string {
  const d = config.defaults;
  const lines = [
    `defaults: connect_timeout ${formatDuration(d.connectTimeout)}, idle_timeout ${formatDuration(d.idleTimeout)}, ` +
      `drain_timeout ${formatDuration(d.drainTimeout)}, queue_timeout ${formatDuration(d.queueTimeout)}`,
    `session timers: hello_timeout ${formatDuration(d.helloTimeout)}, write_timeout ${formatDuration(d.writeTimeout)}, ` +
      `half_closed_timeout ${formatDuration(d.halfClosedTimeout)}, max_session_duration ${formatDuration(d.maxSessionDuration)}`,
  ];
  // `ranged`: the backend of a listener port range, shown once for the range (`app ($port)`, targets `10.0.0.5:$port`).
  const backendLines = (name: string, indent: string, ranged = false) => {
    const backend = config.backends.get(name)!;
    const shown = ranged && backend.portOf !== undefined ? `${backend.portOf.backend} ($port)` : backend.name;
    const header = `backend ${shown} (${describeBackend(backend)})`;
    const source = describeSource(backend); // a target source that gives the targets (backend/sources/)
    const listed = [...backend.targets.map((target) => describeTarget(target, ranged)), ...(backend.srv ?? []).map(describeSrv)];
    const targets = source === null ? listed.map((line) => `${indent}${line}`) : [`${indent}${source}`];
    return [header, ...targets];
  };
  let range: ListenerConfig["range"];
  for (const listener of config.listeners) {
    // the listeners of one port range are printed once, as the range
    if (listener.range !== undefined && listener.range === range) continue;
    range = listener.range;
    const ranged = range !== undefined;
    if (listener.mode === "tcp") {
      const [header, ...targets] = backendLines(listener.backend!, "  ", ranged);
      lines.push(`${describeListener(listener, config)} → ${header}`, ...targets);
      continue;
    }
    lines.push(describeListener(listener, config));
    for (const route of listener.routes) {
      const match = [...route.serverNames, ...(route.alpn.length > 0 ? ["alpn", ...route.alpn] : [])].join(" ");
      const [header, ...targets] = backendLines(route.backend, "    ", ranged);
      lines.push(`  route ${match} → ${header}`, ...targets);
    }
    if (listener.backend === null) {
      lines.push("  default: none (other clients get the TLS alert unrecognized_name)");
    } else {
      const [header, ...targets] = backendLines(listener.backend, "    ", ranged);
      lines.push(`  default → ${header}`, ...targets);
    }
  }
  if (config.admin !== undefined) {
    const { listen, tokenFile, protectReads, tls } = config.admin;
    const changes = tokenFile !== null ? `changes with the token in ${tokenFile}` : `changes only with $${DEFAULTS.admin.tokenEnv} set`;
    const https = tls == null ? "" : `; https with ${tls.cert}${tls.clientCa === null ? "" : `, client certificates required against ${tls.clientCa}`}`;
    lines.push(`admin ${formatAddress(listen)}: ${changes}; reads ${protectReads ? "need the token" : "open"}${https}`);
  }
  return lines.join("\n") + "\n";
}

/** `10.0.0.5:6379 weight 2`; `10.0.0.5:$port` for a `$port` target shown for a whole port range. */
function describeTarget(target: TargetConfig, ranged = false): string {
  const address = formatAddress(target.address);
  const parts = [ranged && target.dialledPort === true ? address.replace(/:\d+$/, ":$port") : address];
  if (!target.backup || target.weight !== 1) parts.push(`weight ${target.weight}`);
  if (target.maxConnections > 0) parts.push(`max_connections ${target.maxConnections}`);
  if (target.backup) parts.push("backup");
  if (target.source !== undefined) parts.push(`source ${target.source}`);
  return parts.join(" ");
}

/** `srv _redis._tcp.example.internal (…)`: a target from SRV records, listed as a hostname target is. */
function describeSrv(srv: SrvTargetConfig): string {
  const limit = srv.maxConnections > 0 ? ` max_connections ${srv.maxConnections}` : "";
  return `srv ${srv.srv}${limit} (port and weight from each record, lowest priority primary, higher ones backup)`;
}

function describeListener(listener: ListenerConfig, config: Config): string {
  // a port range is printed once: `listener 127.0.0.1:7000-7010 (11 ports)`, `listener web 127.0.0.1:7000-7010 (11 ports, named web:PORT)`
  const { range } = listener;
  const address = range === undefined ? formatAddress(listener.listen) : range.listen;
  const own: string[] = [];
  if (range !== undefined) own.push(`${range.ports} ports${range.name === null ? "" : `, named ${range.name}:PORT`}`);
  const udp = listener.protocol === "udp" ? listener.udp : undefined;
  // `listener dns 127.0.0.1:53 (udp, flows idle 1m, responses 1, max_flows 10000)`; sni: QUIC Initials
  if (udp !== undefined) own.push("udp", ...describeUdp(listener, udp));
  if (listener.mode === "sni") own.push(udp !== undefined ? "sni (QUIC Initials)" : "sni");
  if (listener.helloTimeout !== config.defaults.helloTimeout) own.push(`hello_timeout ${formatDuration(listener.helloTimeout)}`);
  if (listener.tls !== null) {
    const certificate = (c: ListenerCertificate, i: number) =>
      `${c.cert} (${[i === 0 ? "default" : "", c.names.join(" "), c.ciphers ? `ciphers ${c.ciphers}` : ""].filter(Boolean).join("; ")})`;
    own.push(`tls ${listener.tls.certificates.map(certificate).join(", ")}`, `tls_policy (${describePolicy(listener.tls.policy ?? null)})`);
  }
  if (listener.acceptProxy) own.push(`accept_proxy from ${listener.trusted.join(" ")}`);
  if (listener.allow.length > 0) own.push(`allow ${listener.allow.join(" ")}`);
  if (listener.deny.length > 0) own.push(`deny ${listener.deny.join(" ")}`);
  if (listener.maxConnections > 0) own.push(`max_connections ${listener.maxConnections}`);
  if (listener.maxConnectionsPerIp > 0) own.push(`max_connections_per_ip ${listener.maxConnectionsPerIp}`);
  if (listener.connectionRatePerIp > 0) own.push(`connection_rate_per_ip ${listener.connectionRatePerIp}/s`);
  if (listener.connectTimeout !== config.defaults.connectTimeout) own.push(`connect_timeout ${formatDuration(listener.connectTimeout)}`);
  if (udp === undefined && listener.idleTimeout !== config.defaults.idleTimeout) own.push(`idle_timeout ${formatDuration(listener.idleTimeout)}`);
  if (listener.writeTimeout !== config.defaults.writeTimeout) own.push(`write_timeout ${formatDuration(listener.writeTimeout)}`);
  if (listener.halfClosedTimeout !== config.defaults.halfClosedTimeout) own.push(`half_closed_timeout ${formatDuration(listener.halfClosedTimeout)}`);
  if (listener.maxSessionDuration !== config.defaults.maxSessionDuration) own.push(`max_session_duration ${formatDuration(listener.maxSessionDuration)}`);
  own.push(...describeControls(listener.controls));
  const name = range === undefined ? listener.name : (range.name ?? address);
  return `listener ${name === address ? "" : `${name} `}${address}${own.length > 0 ? ` (${own.join(", ")})` : ""}`;
}

/** A UDP listener's flow settings, the idle timeout always (it is never off). */
function describeUdp(listener: ListenerConfig, udp: NonNullable<ListenerConfig["udp"]>): string[] {
  const out = [`flows idle ${formatDuration(listener.idleTimeout)}`];
  if (udp.responses > 0) out.push(`responses ${udp.responses}`);
  if (udp.maxFlows > 0) out.push(`max_flows ${udp.maxFlows}`);
  if (udp.maxFlowsPerIp > 0) out.push(`max_flows_per_ip ${udp.maxFlowsPerIp}`);
  return out;
}

/** A terminating listener's policy, Bun's defaults spelled out: `TLSv1.2-TLSv1.3; ciphers default; curves default; verify_client off`. */
function describePolicy(policy: TlsPolicy | null): string {
  const versions = `${policy?.minVersion ?? "TLSv1.2"}-${policy?.maxVersion ?? "TLSv1.3"}`;
  const verify = policy === null || policy.verifyClient === "off" ? "verify_client off" : `verify_client ${policy.verifyClient} against ${policy.clientCa}`;
  return [versions, `ciphers ${policy?.ciphers ?? "default"}`, `curves ${policy?.curves ?? "default"}`, verify].join("; ");
}

/**
 * `send/expect every 2s` for the shorthand; the steps, an HTTP check, the check address and the
 * non-default policies otherwise. A password shows as `[secret]` and its source, never its value.
 */
function describeHealth(health: HealthConfig): string {
  const steps = checkSteps(health);
  const plain = (health.steps ?? []).length === 0 && (health.auth ?? null) === null;
  const kind =
    health.http != null
      ? `http ${health.http.method} ${health.http.path} → ${health.http.status.join("|")}${health.http.body === null ? "" : ` with body containing ${JSON.stringify(health.http.body)}`}`
      : plain
        ? health.send !== null
          ? "send/expect"
          : health.expect !== null
            ? "expect"
            : "connect"
        : `steps ${steps.map(describeStep).join(" → ")}`;
  const extra: string[] = [];
  if (health.udp === true) extra.push("over udp");
  if (health.auth != null) extra.push(`password from ${health.auth.password.source}`);
  if (health.address != null) extra.push(`at ${formatAddress(health.address)}`);
  if (health.port != null) extra.push(`on port ${health.port}`);
  if (health.tls === false) extra.push("without tls");
  if (health.init === "down") extra.push("init down");
  if (health.onDown === "close-sessions") extra.push("on_down close-sessions");
  if (health.onUp === "close-backup-sessions") extra.push("on_up close-backup-sessions");
  return `${kind} every ${formatDuration(health.interval)}${extra.length > 0 ? `, ${extra.join(", ")}` : ""}`;
}

function describeBackend(backend: BackendConfig): string {
  const { health, tls } = backend;
  const parts = [`${backend.balance}`, `retries ${backend.retries}`, health === null ? "no health checks" : `health: ${describeHealth(health)}`];
  if ((backend.maxFails ?? 0) > 0) parts.push(`max_fails ${backend.maxFails} within ${formatDuration(backend.failTimeout ?? DEFAULTS.failTimeout)}`);
  if ((backend.slowStart ?? 0) > 0) parts.push(`slow_start ${formatDuration(backend.slowStart!)}`);
  if (backend.sendProxy !== null) parts.push(`send_proxy ${backend.sendProxy}`);
  if (backend.source != null) parts.push(`source ${backend.source}`);
  parts.push(...describeControls(backend.controls));
  if (tls !== null) {
    const name = tls.serverName ?? "the target's host";
    parts.push(tls.verify ? `tls verifying ${name} against ${tls.ca ?? "the system CAs"}` : `tls to ${name} without verification`);
    // The certificate's path only: the key's contents never leave the file.
    if (tls.cert != null) parts.push(`client certificate ${tls.cert}`);
    if (tls.minVersion != null || tls.maxVersion != null) parts.push(`tls versions ${tls.minVersion ?? "TLSv1.2"}-${tls.maxVersion ?? "TLSv1.3"}`);
    if (tls.ciphers != null) parts.push(`ciphers ${tls.ciphers}`);
  }
  return parts.join(", ");
}

/** `download_rate 4 MB/s, upload_rate_per_ip 64 MiB/s, tcp_keepalive 60s/10s×5, tcp_user_timeout 30s`: the session controls that are on. */
function describeControls(controls: SessionControls | undefined): string[] {
  if (controls === undefined) return [];
  const parts: string[] = [];
  const rates = [
    ["upload_rate", controls.uploadRate],
    ["download_rate", controls.downloadRate],
    ["upload_rate_per_ip", controls.uploadRatePerIp],
    ["download_rate_per_ip", controls.downloadRatePerIp],
  ] as const;
  for (const [key, rate] of rates) if (rate > 0) parts.push(`${key} ${formatSize(rate)}/s`);
  const keepalive = controls.tcpKeepalive;
  if (keepalive !== null) parts.push(`tcp_keepalive ${formatDuration(keepalive.idle)}/${formatDuration(keepalive.interval)}×${keepalive.count}`);
  if (controls.tcpUserTimeout > 0) parts.push(`tcp_user_timeout ${formatDuration(controls.tcpUserTimeout)}`);
  return parts;
}
