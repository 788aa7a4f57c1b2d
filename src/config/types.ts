/**
 * The resolved config: what `parseConfig` returns and `createRouter` runs. Defaults are applied
 * (their values live in defaults.ts), durations are in ms, addresses are parsed. The types only:
 * every layer above config/ may import them, none below.
 */
import type { Address } from "../util/address.ts";
import type { Secret } from "../util/secret.ts";

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

export interface HealthConfig {
  /** ms between two checks of one target. Must be > 0: a backend with checks off creates no checker. */
  interval: number;
  /** ms one check may take, connect and reply included. Must be > 0. */
  timeout: number;
  /** Consecutive passed checks that mark a down target up. At least 1. */
  rise: number;
  /** Consecutive failed checks (active or reported) that mark a healthy target down. At least 1. */
  fall: number;
  /** Bytes written once connected; null (or empty) = write nothing. */
  send: Uint8Array | null;
  /** Bytes the reply must start with; null (or empty) = connecting (and sending) is enough. */
  expect: Uint8Array | null;
  /**
   * What a check does once connected, in order, after `auth` and after the `send`/`expect`
   * shorthand (a config gives one or the other). Absent or empty = nothing more.
   */
  steps?: HealthStep[];
  /** A Redis `AUTH` sent first, whose reply must be `+OK`; absent or null = none. */
  auth?: HealthAuth | null;
  /** Check this port of the target's host instead of the target's port; absent or null = the target's. */
  port?: number | null;
  /** Check this address instead of the target's (HAProxy's `addr`); absent or null = the target's. */
  address?: Address | null;
  /** What a target's health is before its first checks: `up` (default, as HAProxy) or `down` (it carries nothing until `rise` checks passed). */
  init?: "up" | "down";
  /** `close-sessions`: when a target is marked down, its open sessions are closed (reason `target_down`). Default `none`. */
  onDown?: "none" | "close-sessions";
  /** `close-backup-sessions`: when a primary target is marked up, sessions on backup targets are closed (reason `target_down`). Default `none`. */
  onUp?: "none" | "close-backup-sessions";
  /** `type = "http"`: an HTTP request instead of the TCP steps; absent or null = TCP. */
  http?: HttpCheck | null;
  /** Checks over TLS (default: as the backend dials its targets). */
  tls?: boolean;
  /** Checks over UDP (a backend of UDP listeners): each send step is one datagram, each expect step reads one (backend/health/udp-check.ts). */
  udp?: boolean;
}

/**
 * One step of a TCP health check. `send` writes bytes; `expect` waits for the reply (the bytes
 * after what the previous expect matched) to match: `prefix` (bytes; `hex` in the config is a
 * prefix given in hex), `contains` (a substring anywhere in the bytes so far), `regex` (a
 * JavaScript regular expression tested on the reply so far, read as latin1). `text` is how the
 * config spelled it, for `check` and logs.
 */
export type HealthStep =
  | { send: Uint8Array; text: string }
  | { expect: "prefix" | "contains"; bytes: Uint8Array; text: string }
  | { expect: "regex"; regex: RegExp; text: string };

/** A Redis AUTH (`AUTH password` or `AUTH username password`); the password never appears in logs or `check` output. */
export interface HealthAuth {
  username: string | null;
  password: Secret;
}

/** An HTTP check (Patroni's `GET /primary` on 8008): the status must be one of `status`, and the body contain `body` when set. */
export interface HttpCheck {
  method: string;
  /** Starts with `/`. */
  path: string;
  /** Accepted statuses; default [200]. */
  status: number[];
  /** A substring the body must contain; null = any body. */
  body: string | null;
  /** The Host header; null = the checked address. */
  host: string | null;
}

export interface Config {
  defaults: DefaultsConfig;
  listeners: ListenerConfig[];
  /** By name, in file order. A backend no listener names is kept (see `configWarnings`). */
  backends: Map<string, BackendConfig>;
  /** The admin listener (metrics, health, status page); absent = off. */
  admin?: AdminConfig;
  /** `"stdout"` or a file path: one line per session; absent = off. */
  accessLog?: string;
  /** DNS servers (`ip:port`) that hostname targets are looked up with; absent = the system resolver. */
  dnsServers?: string[];
}

export interface AdminConfig {
  /** Where the admin HTTP server listens (port 0: any free port). */
  listen: Address;
  /**
   * Absolute path of the file holding the bearer token of the control API (surrounding
   * whitespace ignored); null = the DEFAULTS.admin.tokenEnv environment variable, and without
   * either the write endpoints answer 403.
   */
  tokenFile: string | null;
  /** Reads need the token too (not /healthz, /readyz). Default false. */
  protectReads: boolean;
  /** Serve HTTPS with this certificate (and verify clients against `clientCa`); absent or null = plain HTTP. */
  tls?: AdminTlsConfig | null;
}

/** `[admin] tls = { cert, key, client_ca, verify_client }`: file paths, absolute once loaded. */
export interface AdminTlsConfig {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** Its unencrypted PEM key. */
  key: string;
  /** PEM bundle client certificates must chain to; null = no client certificate asked for. */
  clientCa: string | null;
}

/** Durations in ms, 0 = off. */
export interface DefaultsConfig {
  connectTimeout: number;
  idleTimeout: number;
  /** ms a session's queued bytes may wait for their reader to take any; 0 = off. */
  writeTimeout: number;
  /** ms a half-closed session may stay idle; 0 = off. */
  halfClosedTimeout: number;
  /** ms after accept at which a session is closed; 0 = off. */
  maxSessionDuration: number;
  /** ms for a TLS handshake, PROXY header or ClientHello; never 0. */
  helloTimeout: number;
  drainTimeout: number;
  /** How long a new session waits for a target when every target is full; 0 = it is closed at once. */
  queueTimeout: number;
}

export interface ListenerConfig {
  /** Unique; defaults to the formatted listen address. */
  name: string;
  listen: Address;
  /**
   * "tcp" (default): every connection goes to `backend`. "sni": TLS passthrough; the
   * ClientHello's server name and ALPN pick one of `routes`, else `backend`.
   */
  mode: "tcp" | "sni";
  /**
   * The name of a backend of `Config.backends`. Always set in tcp mode. In sni mode it is the
   * default route (no route matched, or no SNI); null = such clients get the TLS alert
   * unrecognized_name (112) and are closed.
   */
  backend: string | null;
  /** sni mode: the routes in file order (empty in tcp mode). See `RouteConfig`. */
  routes: RouteConfig[];
  /** ms a client has to finish its TLS handshake (tls), PROXY header (accept_proxy) and ClientHello (sni); default 10 s, never 0. */
  helloTimeout: number;
  /** Every connection starts with a PROXY header (v1 or v2) from a `trusted` address; default false. */
  acceptProxy: boolean;
  /** CIDRs (canonical, `127.0.0.1/32`) allowed to send a PROXY header; non-empty iff `acceptProxy`. */
  trusted: string[];
  /**
   * Source ACLs on the client address (the PROXY header's source when `acceptProxy`), as
   * canonical CIDRs. A client is refused when it is in `deny`, or when `allow` is not empty and
   * it is in none of `allow`. Empty = no rule. IPv6 ranges match only IPv6 clients.
   */
  allow: string[];
  deny: string[];
  /** Sessions open at once from one client IP; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** New connections per second from one client IP; 0 = no limit. */
  connectionRatePerIp: number;
  /** Terminate TLS (certificate by SNI) and forward plaintext (tcp mode only); null = no TLS. */
  tls: ListenerTlsConfig | null;
  /** Sessions open at once on this listener; 0 = no limit. */
  maxConnections: number;
  /** Bandwidth limits and TCP options of its client sockets; absent = none. */
  controls?: SessionControls;
  /** The defaults' values unless overridden on the listener. */
  connectTimeout: number;
  idleTimeout: number;
  writeTimeout: number;
  halfClosedTimeout: number;
  maxSessionDuration: number;
  /** "udp": datagrams, forwarded per flow (src/proxy/udp/, docs/udp.md); absent = "tcp". */
  protocol?: "tcp" | "udp";
  /** A UDP listener's flow settings; set iff `protocol` is "udp". */
  udp?: UdpListenerConfig;
  /**
   * Set on each listener a port range expands into (config/ranges.ts): the range as written
   * (`127.0.0.1:7000-7010`), its number of ports, and the name the file gave (the listener is
   * then `NAME:PORT`; null: named after its address). Absent for a single address.
   */
  range?: { listen: string; ports: number; name: string | null };
}

/**
 * A UDP listener's flows (a flow: one client address:port and its upstream socket). Its
 * `idleTimeout` (ListenerConfig) ends a flow that moved no datagram either way; never 0 for UDP.
 * In sni mode the route table is read from each flow's QUIC Initial (`helloTimeout` bounds it).
 */
export interface UdpListenerConfig {
  /** Flows open at once on this listener; 0 = no limit (the open file limit still applies). */
  maxFlows: number;
  /** Flows open at once from one client IP; 0 = no limit. */
  maxFlowsPerIp: number;
  /** A flow ends after this many datagrams from its upstream (DNS: 1); 0 = off. */
  responses: number;
}

/**
 * One SNI route: a client that matches goes to `backend`. At least one of `serverNames` and
 * `alpn` is non-empty; with both, both must match. Precedence (src/protocol/sni.ts): exact name, then
 * wildcard, then ALPN-only, then the listener's backend; the first listed wins within a kind.
 * An empty `alpn` means "any protocol" (pass it to `ServerNameRoutes` as undefined).
 */
export interface RouteConfig {
  /** Normalized by `parseServerNamePattern`: lower case, no trailing dot; `*.example.com` = one label. */
  serverNames: string[];
  /** ALPN protocol ids (`h2`, `http/1.1`), exact; the client must offer one of them. */
  alpn: string[];
  backend: string;
  /**
   * A terminating listener's route by the client's verified certificate (tcp mode with
   * `tls_policy.verify_client`); absent = an SNI route. See `ClientCertRule`.
   */
  client?: ClientCertRule;
}

/** Matches a verified client certificate; every field given must match. */
export interface ClientCertRule {
  /** The whole subject, `CN=admin,O=ops` (compared as a set of attributes, case-insensitive keys); null = any. */
  subject: string | null;
  /** The subject CN is one of these (exact); empty = any. */
  cn: string[];
  /** The SHA-256 fingerprint is one of these (hex, upper case, colon-separated, as OpenSSL prints it); empty = any. */
  fingerprint: string[];
}

/** A terminating listener's certificates; the first is the default. */
export interface ListenerTlsConfig {
  certificates: ListenerCertificate[];
  /** The listener's TLS policy (`tls_policy`); absent = Bun's defaults, no client certificates asked. */
  policy?: TlsPolicy;
}

/** TLS protocol versions a policy names. */
export const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/**
 * A terminating listener's TLS policy. Absent fields are Bun's defaults (TLS 1.2 and 1.3, its
 * cipher list, X25519, P-256 and P-384). TLS 1.3 cipher suites cannot be chosen on Bun 1.4
 * (BoringSSL), so there is no field for them (the config refuses `ciphersuites`).
 */
export interface TlsPolicy {
  minVersion: TlsVersion | null;
  maxVersion: TlsVersion | null;
  /** OpenSSL cipher list for TLS 1.2 (`ECDHE-ECDSA-AES128-GCM-SHA256:…`); null = Bun's. */
  ciphers: string | null;
  /** Key exchange groups, `X25519:P-256`; null = Bun's. */
  curves: string | null;
  /** Absolute path of the PEM CA bundle client certificates are verified against; null = none asked. */
  clientCa: string | null;
  /** `required`: a client without a verified certificate is refused; `optional`: none is fine, a bad one is refused; `off` (default). */
  verifyClient: "off" | "optional" | "required";
}

/** Absolute paths (relative ones are taken from the config file's directory), checked at load. */
export interface ListenerCertificate {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** PEM private key of the leaf certificate (not encrypted). */
  key: string;
  /**
   * The server names (SNI) it is served for, normalized (`*.example.com` = one label): `names`
   * from the config, else the leaf's DNS subjectAltNames (its CN when it has none), read at load.
   */
  names: string[];
  /** TLS 1.2 cipher list for clients that get this certificate (overrides the policy's); absent or null = the policy's. */
  ciphers?: string | null;
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

/**
 * Session controls of a listener (its client sockets) or a backend (its upstream sockets). A
 * session through a listener and a backend that both have limits is held to each of them.
 */
export interface SessionControls {
  /** Bytes per second client → upstream, per session; 0 = no limit. */
  uploadRate: number;
  /** Bytes per second upstream → client, per session; 0 = no limit. */
  downloadRate: number;
  /** Bytes per second client → upstream, shared by every session of one client address; 0 = no limit. */
  uploadRatePerIp: number;
  /** Bytes per second upstream → client, shared by every session of one client address; 0 = no limit. */
  downloadRatePerIp: number;
  /** SO_KEEPALIVE with these TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT; null = the system's (no keepalive). Plain sockets only. */
  tcpKeepalive: TcpKeepalive | null;
  /** TCP_USER_TIMEOUT in ms; 0 = the system's. Plain sockets only. */
  tcpUserTimeout: number;
}

/** Keepalive probes: the first after `idle` ms without traffic, then every `interval` ms, `count` unanswered ones close the connection. Whole seconds. */
export interface TcpKeepalive {
  idle: number;
  interval: number;
  count: number;
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

export type ConfigFormat = "toml" | "json";
