/**
 * The resolved `[backends.NAME]` tables (backend-schema.ts, sentinel-schema.ts): a backend, its
 * balance, its targets (listed, from SRV records, or the primary Redis Sentinel names) and its
 * TLS for dialling them. Its health checks are in health-types.ts.
 */
import type { Address } from "../util/address.ts";
import type { HealthAuth, HealthConfig } from "./health-types.ts";
import type { SessionControls, TlsVersion } from "./socket-types.ts";

export const BALANCES = ["round-robin", "least-conn", "random-two", "source-hash"] as const;

/**
 * - `round-robin` (default): smooth weighted round-robin, nginx's algorithm; weights 5,1,1 give
 *   a a b a c a a.
 * - `least-conn`: fewest `active / weight` (as nginx); ties share by smooth weighted
 *   round-robin, so with short sessions (all at 0 active) it still follows the weights. With
 *   fewer open sessions than the weights add up to, light targets get more than their share
 *   (an idle target always beats a busy one).
 * - `random-two`: power of two choices: two distinct targets drawn at random (by weight), the
 *   one with the lower `active / weight` wins.
 * - `source-hash`: weighted rendezvous hashing of the client IP: a client keeps its target while
 *   it is available, and removing a target moves only that target's clients.
 */
export type Balance = (typeof BALANCES)[number];

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
  /** Without active checks: failed connects within `failTimeout` that mark a target down for `failTimeout`; 0 = off. */
  maxFails?: number;
  /** ms; see maxFails. */
  failTimeout?: number;
  /** ms over which a target's weight ramps up after it comes up; 0 = off. */
  slowStart?: number;
  /** The target is the primary Redis Sentinel names (backend/sources/sentinel.ts); `targets` is then empty. Absent or null = the targets as listed. */
  sentinel?: SentinelConfig | null;
  /** `{ srv = "…" }` entries of the file's `targets`: targets from SRV records (backend/sources/srv.ts), next to `targets`. Absent or empty = none. */
  srv?: SrvTargetConfig[];
  /**
   * Set on each backend a backend with `$port` targets expands into, one per listener port
   * (config/ranges.ts): the name in the file and the port. The backend is then named
   * `NAME:PORT` and its `$port` targets have that port. Absent otherwise.
   */
  portOf?: { backend: string; port: number };
  /** Bandwidth limits and TCP options of its upstream sockets; absent = none. */
  controls?: SessionControls;
  /** The local address upstream connections are made from (an IP of this machine); absent or null = the system's choice. */
  source?: string | null;
}

export interface TargetConfig {
  address: Address;
  /** ≥ 1. */
  weight: number;
  /** 0 = no limit. */
  maxConnections: number;
  backup: boolean;
  /** Written `host:$port`: the port is the one the client dialled, filled in per listener port (config/ranges.ts). Absent = as written. */
  dialledPort?: boolean;
  /** This target's own source address (overrides the backend's); absent = the backend's. */
  source?: string;
}

/**
 * `{ srv = "_redis._tcp.example.internal" }` in a backend's targets: one target per address of
 * each SRV record's host, with the record's port; the lowest priority gives the primary
 * targets, the others backups; the record's weight is the target's (0 counts as 1).
 */
export interface SrvTargetConfig {
  /** The SRV name asked, lower case, without a trailing dot: `_service._proto.domain`. */
  srv: string;
  /** Sessions open at once on each target it gives; 0 = no limit. */
  maxConnections: number;
}

/** `sentinel = { master = "mymaster", sentinels = ["127.0.0.1:26379", …] }`. */
export interface SentinelConfig {
  /** The master name the sentinels monitor. */
  master: string;
  /** At least one; a majority of them must agree on the primary at start and when polled. */
  sentinels: Address[];
  /** ms between two polls of every sentinel (the fallback for a missed +switch-master). */
  pollInterval: number;
  /** ms one question to a sentinel may take. */
  timeout: number;
  /** AUTH sent to each sentinel first; null = none. */
  auth: HealthAuth | null;
}

/** How a backend dials its targets over TLS. */
export interface BackendTlsConfig {
  /** SNI sent and the name the certificate is verified against; null = the target's host. */
  serverName: string | null;
  /** Absolute path of a PEM bundle of trusted CAs; null = the system's. */
  ca: string | null;
  /** Close the session when the certificate does not verify; default true. */
  verify: boolean;
  /** Absolute paths of a client certificate chain and its key, shown to targets that ask (mTLS); both or neither; absent or null = none. */
  cert?: string | null;
  key?: string | null;
  minVersion?: TlsVersion | null;
  maxVersion?: TlsVersion | null;
  /** TLS 1.2 cipher list; absent or null = Bun's. */
  ciphers?: string | null;
}
