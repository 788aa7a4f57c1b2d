/**
 * What a listener's client sockets and a backend's upstream sockets both take: the TLS protocol
 * versions a policy names, and session controls (bandwidth limits, TCP options). Their value
 * schemas are in values.ts.
 */

/** TLS protocol versions a policy names. */
export const TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

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
