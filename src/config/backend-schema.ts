/**
 * The schema of a `[backends.NAME]` table: its targets (an address, a table, or an SRV name),
 * its balance and its `tls` for dialling; the `health` and `sentinel` tables are in
 * health-schema.ts and sentinel-schema.ts. schema.ts resolves the table into a `BackendConfig`.
 */
import * as v from "valibot";
import { DEFAULTS } from "./defaults.ts";
import { Health } from "./health-schema.ts";
import { describe, isRecord } from "./messages.ts";
import { Sentinel } from "./sentinel-schema.ts";
import { BALANCES, type BackendTlsConfig, type SrvTargetConfig, type TargetConfig } from "./backend-types.ts";
import {
  boolean,
  cipherList,
  ciphersuitesRefused,
  count,
  duration,
  expected,
  filePath,
  fromSrvRecords,
  resolveInterval,
  SESSION_CONTROL_KEYS,
  sendProxy,
  sendServerName,
  sourceAddress,
  srvName,
  table,
  targetAddress,
  tlsVersion,
} from "./values.ts";

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
export function srvTargets(targets: readonly (TargetConfig | SrvTargetConfig)[] | undefined): { srv?: SrvTargetConfig[] } {
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

export const Backend = table(
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
