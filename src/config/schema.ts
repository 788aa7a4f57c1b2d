/**
 * The schema of each config section (valibot) and of the whole file, whose transform applies
 * the defaults and gives the resolved `Config`.
 */
import * as v from "valibot";
import { checkReferences } from "./checks.ts";
import { describe, isRecord } from "./messages.ts";
import {
  address,
  alpnList,
  boolean,
  cidrList,
  count,
  dnsServers,
  duration,
  expected,
  filePath,
  mode,
  name,
  resolveInterval,
  sendProxy,
  sendServerName,
  serverNames,
  table,
  splitSubject,
  cipherList,
  ciphersuitesRefused,
  curveList,
  listenerOnly,
  tlsVersion,
  verifyClient,
  SESSION_CONTROL_KEYS,
  sessionControls,
  sourceAddress,
} from "./values.ts";
import {
  BALANCES,
  type AdminTlsConfig,
  type BackendConfig,
  type BackendTlsConfig,
  type Config,
  type DefaultsConfig,
  type ListenerCertificate,
  type ListenerConfig,
  type ListenerTlsConfig,
  type RouteConfig,
  type TargetConfig,
  type TlsPolicy,
} from "./types.ts";
import { DEFAULTS } from "./defaults.ts";
import { Health } from "./health-schema.ts";
import { Sentinel } from "./sentinel-schema.ts";
import { fromSrvRecords, listenAddress, srvName, targetAddress } from "./values.ts";
import { checkPorts, expandPorts, listenPorts } from "./ranges.ts";
import { checkSrvTargets, checkUdp } from "./checks.ts";
import type { SrvTargetConfig } from "./types.ts";

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

const nonEmpty = (what: string) => v.pipe(v.string(expected(what)), v.minLength(1, expected(what)));

/** `"CN=admin,O=ops"`: attributes `KEY=value`, separated by commas (a comma in a value as `\\,`). */
const clientSubject = v.pipe(
  nonEmpty('a subject such as "CN=admin,O=ops"'),
  v.check(
    (text) => splitSubject(text) !== null,
    (issue) => `expected a subject such as "CN=admin,O=ops", got ${describe(issue.input)}`,
  ),
);

/** A SHA-256 fingerprint, 32 bytes in hex, with or without colons; kept as OpenSSL prints it (`AB:CD:…`). */
const fingerprint = v.pipe(
  nonEmpty('a SHA-256 fingerprint such as "AB:CD:…" (openssl x509 -noout -fingerprint -sha256)'),
  v.transform((text) => text.replaceAll(":", "").toUpperCase()),
  v.regex(/^[0-9A-F]{64}$/, (issue) => `expected a SHA-256 fingerprint (64 hex digits, colons allowed), got ${describe(issue.input)}`),
  v.transform((hex) => hex.match(/../g)!.join(":")),
);

/**
 * `[[listeners.routes]]`: server_names and/or alpn → backend (sni mode), or client_subject,
 * client_cn and/or client_fingerprint → backend (a terminating listener that verifies client
 * certificates). Which keys go with which listener is checked in `checkListener`.
 */
const Route = v.pipe(
  table(
    {
      server_names: v.optional(serverNames("expected at least one name (leave server_names out to match by alpn alone)")),
      alpn: v.optional(alpnList),
      client_subject: v.optional(clientSubject),
      client_cn: v.optional(
        v.pipe(v.array(nonEmpty('a common name such as "admin"'), expected('a list of names such as ["admin"]')), v.minLength(1, "expected at least one name")),
      ),
      client_fingerprint: v.optional(
        v.pipe(v.array(fingerprint, expected('a list of SHA-256 fingerprints such as ["AB:CD:…"]')), v.minLength(1, "expected at least one fingerprint")),
      ),
      backend: name,
    },
    { backend: "the name of the backend for clients this route matches" },
    'a table such as { server_names = ["db.example.com"], backend = "db" }',
  ),
  v.transform((r): RouteConfig => {
    const route: RouteConfig = { serverNames: r.server_names ?? [], alpn: r.alpn ?? [], backend: r.backend };
    if (r.client_subject !== undefined || r.client_cn !== undefined || r.client_fingerprint !== undefined)
      route.client = { subject: r.client_subject ?? null, cn: r.client_cn ?? [], fingerprint: r.client_fingerprint ?? [] };
    return route;
  }),
);

function certificate(what: string) {
  return v.pipe(
    table(
      {
        cert: filePath,
        key: filePath,
        names: v.optional(serverNames("expected at least one name (leave names out to use the certificate's own)")),
        ciphers: v.optional(cipherList),
        ciphersuites: v.optional(ciphersuitesRefused),
        min_version: v.optional(listenerOnly("min_version")),
        max_version: v.optional(listenerOnly("max_version")),
        curves: v.optional(listenerOnly("curves (TLS 1.3 key shares)")),
      },
      { cert: "the certificate chain file, PEM", key: "the private key file, PEM" },
      what,
    ),
    v.transform((c): ListenerCertificate => ({ cert: c.cert, key: c.key, names: c.names ?? [], ...(c.ciphers ? { ciphers: c.ciphers } : {}) })),
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

/** `tls_policy = { min_version, max_version, ciphers, curves, client_ca, verify_client }` of a terminating listener. */
const TlsPolicySchema = v.pipe(
  table(
    {
      min_version: v.optional(tlsVersion),
      max_version: v.optional(tlsVersion),
      ciphers: v.optional(cipherList),
      ciphersuites: v.optional(ciphersuitesRefused),
      curves: v.optional(curveList),
      client_ca: v.optional(filePath),
      verify_client: v.optional(verifyClient),
    },
    {},
    'a table such as { min_version = "TLSv1.3", client_ca = "clients-ca.pem", verify_client = "required" }',
  ),
  v.check(
    (p) => p.min_version === undefined || p.max_version === undefined || p.min_version <= p.max_version,
    (issue) =>
      `min_version ${(issue.input as { min_version: string }).min_version} is above max_version ${(issue.input as { max_version: string }).max_version}`,
  ),
  v.transform(
    (p): TlsPolicy => ({
      minVersion: p.min_version ?? null,
      maxVersion: p.max_version ?? null,
      ciphers: p.ciphers ?? null,
      curves: p.curves ?? null,
      clientCa: p.client_ca ?? null,
      verifyClient: p.verify_client ?? (p.client_ca !== undefined ? "required" : "off"),
    }),
  ),
);

/** `protocol = "udp"`: a UDP listener (docs/udp.md); which keys go with it is in `checkUdp`. */
const protocol = v.picklist(["tcp", "udp"], (issue) =>
  typeof issue.input === "string" ? `unknown protocol ${describe(issue.input)} (use "tcp" or "udp")` : expected('"tcp" or "udp"')(issue),
);

/** Which keys go with which mode, and `backend` being required in tcp mode, are in `checkListener`. */
const Listener = table(
  {
    name: v.optional(name),
    listen: listenAddress,
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
    tls_policy: v.optional(TlsPolicySchema),
    max_connections: v.optional(count(0)),
    connect_timeout: v.optional(duration()),
    idle_timeout: v.optional(duration()),
    write_timeout: v.optional(duration()),
    half_closed_timeout: v.optional(duration()),
    max_session_duration: v.optional(duration()),
    ...SESSION_CONTROL_KEYS,
    protocol: v.optional(protocol),
    max_flows: v.optional(count(0)),
    max_flows_per_ip: v.optional(count(0)),
    responses: v.optional(count(0)),
  },
  { listen: 'the address to listen on, e.g. "127.0.0.1:11000"' },
);

const TargetTable = v.pipe(
  table(
    {
      address: targetAddress,
      weight: v.optional(count(1)),
      max_connections: v.optional(count(0)),
      backup: v.optional(boolean),
      source: v.optional(sourceAddress),
    },
    { address: 'the target\'s address, e.g. "127.0.0.1:6379"' },
    'an address or a table such as { address = "127.0.0.1:6379", weight = 2 }',
  ),
  v.transform(
    (t): TargetConfig => ({
      address: t.address.address,
      ...(t.address.dialledPort ? { dialledPort: true } : {}),
      weight: t.weight ?? DEFAULTS.weight,
      maxConnections: t.max_connections ?? DEFAULTS.maxConnections,
      backup: t.backup ?? false,
      ...(t.source !== undefined ? { source: t.source } : {}),
    }),
  ),
);

const TargetAddress = v.pipe(
  targetAddress,
  v.transform(
    ({ address, dialledPort }): TargetConfig => ({
      address,
      weight: DEFAULTS.weight,
      maxConnections: DEFAULTS.maxConnections,
      backup: false,
      ...(dialledPort ? { dialledPort: true } : {}),
    }),
  ),
);

/** `{ srv = "_redis._tcp.example.internal", max_connections }`: targets from SRV records (backend/sources/srv.ts). */
const SrvTarget = v.pipe(
  table(
    {
      srv: srvName,
      max_connections: v.optional(count(0)),
      address: v.optional(fromSrvRecords("the address is each SRV record's host and port")),
      weight: v.optional(fromSrvRecords("the weight is each SRV record's")),
      backup: v.optional(fromSrvRecords("records above the lowest priority are the backups")),
    },
    { srv: 'the SRV name, e.g. "_redis._tcp.example.internal"' },
  ),
  v.transform((t): SrvTargetConfig => ({ srv: t.srv, maxConnections: t.max_connections ?? DEFAULTS.maxConnections })),
);

/** A backend's `srv` from the SRV entries of its targets list: `{ srv }`, or nothing without any. */
function srvTargets(targets: readonly (TargetConfig | SrvTargetConfig)[] | undefined): { srv?: SrvTargetConfig[] } {
  const srv = (targets ?? []).filter((target): target is SrvTargetConfig => "srv" in target);
  return srv.length > 0 ? { srv } : {};
}

/** `"host:port"`, `{ address = "host:port", weight, max_connections, backup }` or `{ srv = "_service._proto.domain" }`. */
const Target = v.lazy((input) => (typeof input === "string" ? TargetAddress : isRecord(input) && "srv" in input ? SrvTarget : TargetTable));

const BALANCE_LIST = `${BALANCES.slice(0, -1).join(", ")} or ${BALANCES.at(-1)}`;
const balance = v.picklist(BALANCES, (issue) =>
  typeof issue.input === "string" ? `unknown balance ${describe(issue.input)} (use ${BALANCE_LIST})` : expected(BALANCE_LIST)(issue),
);

/** `tls = {}` dials over TLS, verifying against the system CAs and the target's host name. */
const BackendTls = v.pipe(
  table(
    {
      servername: v.optional(sendServerName),
      ca: v.optional(filePath),
      verify: v.optional(boolean),
      cert: v.optional(filePath),
      key: v.optional(filePath),
      min_version: v.optional(tlsVersion),
      max_version: v.optional(tlsVersion),
      ciphers: v.optional(cipherList),
      ciphersuites: v.optional(ciphersuitesRefused),
    },
    {},
    'a table such as { servername = "db.example.com", ca = "ca.pem" }',
  ),
  v.check((t) => (t.cert === undefined) === (t.key === undefined), "cert and key go together (a client certificate and its key)"),
  v.check((t) => t.min_version === undefined || t.max_version === undefined || t.min_version <= t.max_version, "min_version is above max_version"),
  v.transform(
    (t): BackendTlsConfig => ({
      serverName: t.servername ?? null,
      ca: t.ca ?? null,
      verify: t.verify ?? true,
      ...(t.cert !== undefined ? { cert: t.cert, key: t.key ?? null } : {}),
      ...(t.min_version !== undefined ? { minVersion: t.min_version } : {}),
      ...(t.max_version !== undefined ? { maxVersion: t.max_version } : {}),
      ...(t.ciphers !== undefined ? { ciphers: t.ciphers } : {}),
    }),
  ),
);

const Backend = table(
  {
    balance: v.optional(balance),
    retries: v.optional(count(0)),
    // Required unless sentinel names the target (checkReferences).
    targets: v.optional(v.pipe(v.array(Target, expected('a list of targets such as ["127.0.0.1:6379"]')), v.minLength(1, "expected at least one target"))),
    sentinel: v.optional(Sentinel),
    health: v.optional(Health),
    max_fails: v.optional(count(0)),
    fail_timeout: v.optional(duration(true)),
    slow_start: v.optional(duration()),
    resolve_interval: v.optional(resolveInterval),
    send_proxy: v.optional(sendProxy),
    tls: v.optional(BackendTls),
    source: v.optional(sourceAddress),
    ...SESSION_CONTROL_KEYS,
  },
  {},
);

/**
 * `[admin] tls = { cert, key, client_ca, verify_client }`: HTTPS, and with `client_ca` only
 * clients with a certificate it signed (mTLS). `verify_client = "optional"` is refused: Bun.serve
 * lets a client whose certificate failed verification through as one that showed none, and the
 * admin cannot tell them apart.
 */
const AdminTls = v.pipe(
  table(
    { cert: filePath, key: filePath, client_ca: v.optional(filePath), verify_client: v.optional(verifyClient) },
    { cert: "the certificate chain file, PEM", key: "the private key file, PEM" },
    'a table such as { cert = "admin.pem", key = "admin.key" }',
  ),
  v.forward(
    v.partialCheck(
      [["verify_client"]],
      (t) => t.verify_client !== "optional",
      '"optional" is not available for the admin (it could not tell a certificate that failed verification from none): use "required" or "off"',
    ),
    ["verify_client"],
  ),
  v.forward(
    v.partialCheck(
      [["verify_client"], ["client_ca"]],
      (t) => t.verify_client !== "required" || t.client_ca !== undefined,
      'missing (verify_client = "required" needs the CA file client certificates are checked against)',
    ),
    ["client_ca"],
  ),
  v.transform((t): AdminTlsConfig => ({ cert: t.cert, key: t.key, clientCa: t.verify_client === "off" ? null : (t.client_ca ?? null) })),
);

const Admin = table(
  { listen: address(true), token_file: v.optional(filePath), protect_reads: v.optional(boolean), tls: v.optional(AdminTls) },
  { listen: 'the address to serve metrics and status on, e.g. "127.0.0.1:9901"' },
);

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
