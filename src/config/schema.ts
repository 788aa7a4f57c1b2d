/**
 * The schema of the whole config file (valibot): its top-level keys and `[defaults]` table, the
 * checks across sections, and the transform that applies the defaults and gives the resolved
 * `Config`. Each section's table has its own file: listener-schema.ts, backend-schema.ts
 * (with health-schema.ts and sentinel-schema.ts), admin-schema.ts.
 */
import * as v from "valibot";
import { Admin } from "./admin-schema.ts";
import { Backend, srvTargets } from "./backend-schema.ts";
import { checkReferences, checkSrvTargets, checkUdp } from "./checks.ts";
import { DEFAULTS } from "./defaults.ts";
import { Listener } from "./listener-schema.ts";
import { isRecord } from "./messages.ts";
import { checkPorts, expandPorts, listenPorts } from "./ranges.ts";
import type { BackendConfig, Config, DefaultsConfig, ListenerConfig, TargetConfig } from "./types.ts";
import { dnsServers, duration, expected, name, resolveInterval, sessionControls, table } from "./values.ts";

const Defaults = table({
  connect_timeout: v.optional(duration()),
  idle_timeout: v.optional(duration()),
  write_timeout: v.optional(duration()),
  half_closed_timeout: v.optional(duration()),
  max_session_duration: v.optional(duration()),
  hello_timeout: v.optional(duration(true)),
  drain_timeout: v.optional(duration()),
  queue_timeout: v.optional(duration()),
  resolve_interval: v.optional(resolveInterval),
});

/** `"stdout"`, a file path, or `"off"`. */
const accessLog = v.pipe(v.string(expected('"stdout", "off" or a file path')), v.minLength(1, expected('"stdout", "off" or a file path')));

export const ConfigSchema = v.pipe(
  table(
    {
      /** A JSON config's pointer to its JSON Schema (editors read it); ignored. */
      $schema: v.optional(v.string(expected("the JSON Schema's path or URL"))),
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
    for (const { path, message } of [
      ...checkReferences(dataset.value, dataset.issues ?? []),
      ...checkPorts(dataset.value, dataset.issues ?? []),
      ...checkSrvTargets(dataset.value, dataset.issues ?? []),
      ...checkUdp(dataset.value, dataset.issues ?? []),
    ]) {
      const items = path.map((key): v.IssuePathItem => ({ type: "unknown", origin: "value", input: undefined, key, value: undefined }));
      addIssue({ message, path: items as [v.IssuePathItem, ...v.IssuePathItem[]] });
    }
  }),
  v.transform((file): Config => {
    const d = file.defaults;
    const defaults: DefaultsConfig = {
      connectTimeout: d?.connect_timeout ?? DEFAULTS.connectTimeout,
      idleTimeout: d?.idle_timeout ?? DEFAULTS.idleTimeout,
      writeTimeout: d?.write_timeout ?? DEFAULTS.writeTimeout,
      halfClosedTimeout: d?.half_closed_timeout ?? DEFAULTS.halfClosedTimeout,
      maxSessionDuration: d?.max_session_duration ?? DEFAULTS.maxSessionDuration,
      helloTimeout: d?.hello_timeout ?? DEFAULTS.helloTimeout,
      drainTimeout: d?.drain_timeout ?? DEFAULTS.drainTimeout,
      queueTimeout: d?.queue_timeout ?? DEFAULTS.queueTimeout,
    };
    const listeners = file.listeners.flatMap((l) =>
      listenPorts(l.listen, l.name).map(
        (one): ListenerConfig => ({
          name: one.name,
          listen: one.listen,
          ...(one.range !== undefined ? { range: one.range } : {}),
          mode: l.mode ?? "tcp",
          backend: l.backend ?? null,
          routes: l.routes ?? [],
          helloTimeout: l.hello_timeout ?? defaults.helloTimeout,
          acceptProxy: l.accept_proxy ?? false,
          trusted: l.trusted ?? [],
          allow: l.allow ?? [],
          deny: l.deny ?? [],
          maxConnectionsPerIp: l.max_connections_per_ip ?? DEFAULTS.maxConnectionsPerIp,
          connectionRatePerIp: l.connection_rate_per_ip ?? DEFAULTS.connectionRatePerIp,
          tls: l.tls === undefined ? null : l.tls_policy === undefined ? l.tls : { ...l.tls, policy: l.tls_policy },
          maxConnections: l.max_connections ?? DEFAULTS.maxConnections,
          connectTimeout: l.connect_timeout ?? defaults.connectTimeout,
          // a UDP flow always has an idle timeout of its own (the defaults' is for TCP sessions)
          idleTimeout: l.idle_timeout ?? (l.protocol === "udp" ? DEFAULTS.udp.idleTimeout : defaults.idleTimeout),
          writeTimeout: l.write_timeout ?? defaults.writeTimeout,
          halfClosedTimeout: l.half_closed_timeout ?? defaults.halfClosedTimeout,
          maxSessionDuration: l.max_session_duration ?? defaults.maxSessionDuration,
          ...sessionControls(l),
          ...(l.protocol === "udp"
            ? {
                protocol: "udp" as const,
                udp: {
                  maxFlows: l.max_flows ?? DEFAULTS.udp.maxFlows,
                  maxFlowsPerIp: l.max_flows_per_ip ?? DEFAULTS.udp.maxFlowsPerIp,
                  responses: l.responses ?? DEFAULTS.udp.responses,
                },
              }
            : {}),
        }),
      ),
    );
    const backends = new Map<string, BackendConfig>();
    for (const [name, b] of Object.entries(file.backends ?? {})) {
      backends.set(name, {
        name,
        balance: b.balance ?? DEFAULTS.balance,
        retries: b.retries ?? DEFAULTS.retries,
        targets: (b.targets ?? []).filter((target): target is TargetConfig => !("srv" in target)),
        ...srvTargets(b.targets),
        sentinel: b.sentinel ?? null,
        maxFails: b.max_fails ?? DEFAULTS.maxFails,
        failTimeout: b.fail_timeout ?? DEFAULTS.failTimeout,
        slowStart: b.slow_start ?? DEFAULTS.slowStart,
        health: b.health ?? null,
        resolveInterval: b.resolve_interval ?? d?.resolve_interval ?? DEFAULTS.discovery.resolveInterval,
        sendProxy: b.send_proxy === undefined || b.send_proxy === "off" ? null : b.send_proxy,
        tls: b.tls ?? null,
        ...sessionControls(b),
        ...(b.source !== undefined ? { source: b.source } : {}),
      });
    }
    const config: Config = expandPorts({ defaults, listeners, backends });
    udpChecks(config);
    if (file.admin !== undefined)
      config.admin = {
        listen: file.admin.listen,
        tokenFile: file.admin.token_file ?? null,
        protectReads: file.admin.protect_reads ?? DEFAULTS.admin.protectReads,
        ...(file.admin.tls !== undefined ? { tls: file.admin.tls } : {}),
      };
    if (file.access_log !== undefined && file.access_log !== "off") config.accessLog = file.access_log;
    if (file.dns_servers !== undefined) config.dnsServers = file.dns_servers;
    return config;
  }),
);

/** The health checks of the backends UDP listeners use run over UDP (checkUdp refuses a backend shared with TCP listeners). */
function udpChecks(config: Config): void {
  for (const listener of config.listeners) {
    if (listener.protocol !== "udp") continue;
    for (const name of [listener.backend, ...listener.routes.map((route) => route.backend)]) {
      const backend = name === null ? undefined : config.backends.get(name);
      if (backend?.health != null && backend.health.udp !== true) backend.health = { ...backend.health, udp: true };
    }
  }
}
