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
import { checkSteps, describeStep } from "../backend/health/check-steps.ts";
import { describeSource } from "../backend/sources/all.ts";
import type { HealthConfig } from "../config/types.ts";
import { UsageError } from "./args.ts";

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
  const backendLines = (name: string, indent: string) => {
    const backend = config.backends.get(name)!;
    const header = `backend ${backend.name} (${describeBackend(backend)})`;
    const source = describeSource(backend); // a target source that gives the targets (backend/sources/)
    const targets = source === null ? backend.targets.map((target) => `${indent}${describeTarget(target)}`) : [`${indent}${source}`];
    return [header, ...targets];
  };
  for (const listener of config.listeners) {
    if (listener.mode === "tcp") {
      const [header, ...targets] = backendLines(listener.backend!, "  ");
      lines.push(`${describeListener(listener, config)} → ${header}`, ...targets);
      continue;
    }
    lines.push(describeListener(listener, config));
    for (const route of listener.routes) {
      const match = [...route.serverNames, ...(route.alpn.length > 0 ? ["alpn", ...route.alpn] : [])].join(" ");
      const [header, ...targets] = backendLines(route.backend, "    ");
      lines.push(`  route ${match} → ${header}`, ...targets);
    }
    if (listener.backend === null) {
      lines.push("  default: none (other clients get the TLS alert unrecognized_name)");
    } else {
      const [header, ...targets] = backendLines(listener.backend, "    ");
      lines.push(`  default → ${header}`, ...targets);
    }
  }
  if (config.admin !== undefined) {
    const { listen, tokenFile, protectReads } = config.admin;
    const changes = tokenFile !== null ? `changes with the token in ${tokenFile}` : `changes only with $${DEFAULTS.admin.tokenEnv} set`;
    lines.push(`admin ${formatAddress(listen)}: ${changes}; reads ${protectReads ? "need the token" : "open"}`);
  }
  return lines.join("\n") + "\n";
}

function describeTarget(target: TargetConfig): string {
  const parts = [formatAddress(target.address)];
  if (!target.backup || target.weight !== 1) parts.push(`weight ${target.weight}`);
  if (target.maxConnections > 0) parts.push(`max_connections ${target.maxConnections}`);
  if (target.backup) parts.push("backup");
  return parts.join(" ");
}

function describeListener(listener: ListenerConfig, config: Config): string {
  const address = formatAddress(listener.listen);
  const own: string[] = [];
  if (listener.mode === "sni") own.push("sni");
  if (listener.helloTimeout !== config.defaults.helloTimeout) own.push(`hello_timeout ${formatDuration(listener.helloTimeout)}`);
  if (listener.tls !== null)
    own.push(
      `tls ${listener.tls.certificates.map((c, i) => `${c.cert} (${[i === 0 ? "default" : "", c.names.join(" ")].filter(Boolean).join("; ")})`).join(", ")}`,
    );
  if (listener.acceptProxy) own.push(`accept_proxy from ${listener.trusted.join(" ")}`);
  if (listener.allow.length > 0) own.push(`allow ${listener.allow.join(" ")}`);
  if (listener.deny.length > 0) own.push(`deny ${listener.deny.join(" ")}`);
  if (listener.maxConnections > 0) own.push(`max_connections ${listener.maxConnections}`);
  if (listener.maxConnectionsPerIp > 0) own.push(`max_connections_per_ip ${listener.maxConnectionsPerIp}`);
  if (listener.connectionRatePerIp > 0) own.push(`connection_rate_per_ip ${listener.connectionRatePerIp}/s`);
  if (listener.connectTimeout !== config.defaults.connectTimeout) own.push(`connect_timeout ${formatDuration(listener.connectTimeout)}`);
  if (listener.idleTimeout !== config.defaults.idleTimeout) own.push(`idle_timeout ${formatDuration(listener.idleTimeout)}`);
  if (listener.writeTimeout !== config.defaults.writeTimeout) own.push(`write_timeout ${formatDuration(listener.writeTimeout)}`);
  if (listener.halfClosedTimeout !== config.defaults.halfClosedTimeout) own.push(`half_closed_timeout ${formatDuration(listener.halfClosedTimeout)}`);
  if (listener.maxSessionDuration !== config.defaults.maxSessionDuration) own.push(`max_session_duration ${formatDuration(listener.maxSessionDuration)}`);
  return `listener ${listener.name === address ? "" : `${listener.name} `}${address}${own.length > 0 ? ` (${own.join(", ")})` : ""}`;
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
  if (tls !== null) {
    const name = tls.serverName ?? "the target's host";
    parts.push(tls.verify ? `tls verifying ${name} against ${tls.ca ?? "the system CAs"}` : `tls to ${name} without verification`);
  }
  return parts.join(", ");
}
