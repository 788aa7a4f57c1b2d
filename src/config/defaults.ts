/**
 * Every default of tcprouter, once, next to its meaning. The config schema, the CLI flags and
 * their help, the library (`createRouter`, `forward`) and `tcprouter check` read them from here.
 * Durations are in ms; 0 means off (no limit, no timeout).
 */
import type { Balance, HealthConfig } from "./types.ts";

export const DEFAULTS = {
  /** Where `forward()` and `serve` without `--config` listen. */
  listen: "127.0.0.1:11000",
  /** Give up on one upstream connect attempt after this long (then the next target is tried). */
  connectTimeout: 10_000,
  /**
   * Close a session that moved no bytes either way for this long; 0 = off. Off by default:
   * Redis and PostgreSQL clients keep idle connections for hours (their pools expect it).
   */
  idleTimeout: 0,
  /**
   * Close a session whose queued bytes were not taken by their reader for this long: a peer
   * that stopped reading (its window closed) holds up to a queue of memory and two sockets.
   * A slow reader that takes anything restarts the count. HAProxy's `timeout server`/`client`
   * cover this with an inactivity timeout; this one spares idle sessions.
   */
  writeTimeout: 120_000,
  /**
   * Close a session with one direction ended (a FIN passed on) that moved no bytes for this
   * long (HAProxy's `timeout client-fin`/`server-fin`): a peer that half-closed and vanished.
   */
  halfClosedTimeout: 600_000,
  /** Close a session this long after it was accepted, whatever it does (Envoy's max_connection_duration); 0 = off. */
  maxSessionDuration: 0,
  /** An upgrade in place: how long the new process may take to start and say it is ready (a cold start of the compiled binary takes well under 1 s). */
  upgradeTimeout: 30_000,
  /** On stop (SIGINT/SIGTERM), how long open sessions may take to finish before they are closed. */
  drainTimeout: 10_000,
  /**
   * How long a new session waits for a place when every target is full; 0 = closed at once.
   * `forward()` has one target and no limits, so it passes 0.
   */
  queueTimeout: 5_000,
  /** Sessions open at once (per listener, per target); 0 = no limit. */
  maxConnections: 0,
  /** Sessions open at once from one client IP on a listener; 0 = no limit. */
  maxConnectionsPerIp: 0,
  /** New connections per second from one client IP on a listener; 0 = no limit. */
  connectionRatePerIp: 0,
  /** Bandwidth limits (upload_rate, download_rate and their _per_ip forms), bytes per second; 0 = no limit. */
  rate: 0,
  /**
   * `tcp_keepalive = { … }` keys left out: the first probe after 60 s without traffic, then every
   * 10 s, 5 unanswered ones close the connection (about 2 minutes for a dead peer). Without the key
   * the system's (Linux: no probes; 2 h, 75 s, 9 once a program turns them on).
   */
  tcpKeepalive: { idle: 60_000, interval: 10_000, count: 5 },
  /** TCP_USER_TIMEOUT: how long sent bytes may stay unacknowledged before the connection is closed; 0 = the system's. */
  tcpUserTimeout: 0,
  /** Bytes a pipe may queue for a slow reader before it pauses the other side. */
  highWaterMark: 1024 * 1024,
  /** A paused side resumes once its queue is down to this many bytes. */
  lowWaterMark: 256 * 1024,
  /**
   * How long a client may take to finish what the listener waits for before it routes: a TLS
   * handshake (tls listeners), a PROXY header, a ClientHello (sni mode). Real clients send
   * their hello in the first packet; 10 s allows for slow links and retransmits. Always on.
   */
  helloTimeout: 10_000,
  /**
   * The share of the session capacity (set by the open file limit) that clients still in their
   * handshake or preface may hold; beyond it such listeners refuse new connections, so silent
   * clients on a TLS or SNI listener cannot starve the other listeners.
   */
  prefaceShare: 0.5,
  balance: "round-robin" satisfies Balance as Balance,
  /**
   * Other targets tried after a failed connect. HAProxy's default is 3 retries of the same
   * server; ours go to other targets, and 2 covers the usual three-target backend.
   */
  retries: 2,
  /** A target's share of new sessions relative to the others. */
  weight: 1,
  /** Passive ejection without active checks (nginx's max_fails): off; nginx's default is 1. */
  maxFails: 0,
  /** The window max_fails are counted in, and how long an ejected target stays down: nginx's 10 s. */
  failTimeout: 10_000,
  /** How long a target's weight ramps up after it comes up; 0 = off (full weight at once). */
  slowStart: 0,
  /** A backend's active checks: HAProxy's `inter 2s rise 2 fall 3`, and a 1 s timeout. */
  health: {
    interval: 2000,
    timeout: 1000,
    rise: 2,
    fall: 3,
    send: null,
    expect: null,
    /** Targets start up, so traffic flows before the first check (as in HAProxy); "down" waits for `rise` passed checks. */
    init: "up",
    /** Open sessions stay on a target marked down (HAProxy's default); "close-sessions" closes them. */
    onDown: "none",
    /** Sessions on backups stay when a primary comes back; "close-backup-sessions" closes them. */
    onUp: "none",
  } as Readonly<HealthConfig> & { init: "up" | "down"; onDown: "none" | "close-sessions"; onUp: "none" | "close-backup-sessions" },
  /** `type = "http"` checks: `GET /`, 200 passes. */
  httpCheck: { method: "GET", path: "/", status: [200] as readonly number[] },
  /** The admin listener's control API (docs/admin-api.md). */
  admin: {
    /** The environment variable that holds the admin token when no token file is given (read by serve and by ctl). */
    tokenEnv: "TCPROUTER_ADMIN_TOKEN",
    /** Reads (/metrics, /status, /, GET /api/…) need the token too; /healthz and /readyz never do. */
    protectReads: false,
    /** Where `tcprouter ctl` finds the admin listener without --admin. */
    ctlAddress: "127.0.0.1:9901",
    /** The largest request body the control API reads, in bytes (its bodies are a few dozen). */
    maxBody: 4096,
    /** The longest `wait` of a drain request. */
    maxWait: 3_600_000,
  },
  /** Redis Sentinel target sources (backend/sources/sentinel.ts). */
  sentinel: {
    /** Every sentinel is asked for the primary this often, besides the +switch-master events; a missed event costs at most this. */
    pollInterval: 1_000,
    /** One question to a sentinel (connect and answer) fails after this long. */
    timeout: 1_000,
    /** A lost +switch-master subscription is made again after this long. */
    reconnectDelay: 1_000,
    /** During a failover, the replica being promoted is asked ROLE this often until it answers master... */
    promotionProbe: 20,
    /** ...for at most this long (then +promoted-slave, +switch-master and polls still switch). */
    promotionWatch: 5_000,
  },
  /** UDP listeners (docs/udp.md). */
  udp: {
    /**
     * A flow that moved no datagram either way for this long ends (its socket and descriptor
     * freed). nginx's proxy_timeout is 10 min, but every flow holds a descriptor: a DNS client
     * that uses a new source port per query would keep 600 sockets per query/s open for 10 min.
     * 60 s is longer than the idle timeout HTTP/3 browsers use (30 s), so a QUIC connection
     * ends by its own timeout first, and sits between Linux conntrack's UDP timeouts (30 s
     * unreplied, 120 s once both sides spoke).
     */
    idleTimeout: 60_000,
    /** Flows per listener and per client IP at once, and replies that end a flow: 0 = no limit. */
    maxFlows: 0,
    maxFlowsPerIp: 0,
    responses: 0,
    /**
     * Datagrams a flow keeps while it cannot send yet (its upstream socket is not ready, or a
     * QUIC Initial is still incomplete); more are dropped and counted. A QUIC ClientHello fits
     * in 1 to 3 Initials; 16 covers a large one with post-quantum key shares.
     */
    pendingDatagrams: 16,
    /** ...and at most this many bytes of them. */
    pendingBytes: 64 * 1024,
  },
  /** DNS discovery of hostname targets. */
  discovery: {
    /** Time between two lookups of a name, unless its TTL is shorter. */
    resolveInterval: 30_000,
    /** No name is looked up more often than this, whatever its TTL (a TTL of 0 included). */
    minInterval: 1_000,
    /** After a failed lookup, the next comes after min(resolve interval, this). */
    retryInterval: 5_000,
    /** A lookup that has not ended after this long fails (and is cancelled when it can be). */
    lookupTimeout: 5_000,
  },
} as const;
