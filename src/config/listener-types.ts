/**
 * The resolved `[[listeners]]` tables (listener-schema.ts): a listener, its SNI and
 * client-certificate routes, its TLS (certificates, policy) and a UDP listener's flows.
 */
import type { Address } from "../util/address.ts";
import type { SessionControls, TlsVersion } from "./socket-types.ts";

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
