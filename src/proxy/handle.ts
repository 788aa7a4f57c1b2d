/**
 * The shapes of a running router as its users see them: the options of `createRouter`, the
 * handle it returns with what `stats()`, `stop()` and `reload()` answer, and the observer
 * interface that metrics and the access log implement. router.ts implements them.
 */
import type { TargetState } from "../backend/backend.ts";
import type { Config } from "../config/types.ts";
import type { Logger } from "../util/log.ts";
import type { Listener } from "./listener.ts";
import type { Router } from "./router.ts";
import type { Session } from "./session.ts";

export interface RouterOptions {
  highWaterMark?: number;
  lowWaterMark?: number;
  logger?: Logger;
  /** Bind with SO_REUSEPORT so that several processes share each address (workers). Default false. */
  reusePort?: boolean;
}

export interface Stats {
  /** Sessions open now. */
  activeSessions: number;
  /** Sessions accepted since start. */
  totalSessions: number;
  /** Bytes read from clients (client → upstream). */
  bytesUp: number;
  /** Bytes read from upstreams (upstream → client). */
  bytesDown: number;
  /** Upstream connect attempts that failed or timed out (a retried attempt counts too). */
  connectFailures: number;
  /** Sessions closed because no target was available (none healthy, all tried, or all full too long). */
  noTarget: number;
  /** Connections closed at accept: over max_connections, over the open file limit, or while draining. */
  refused: number;
  /** Sessions turned away before dialling: allow/deny, per-IP limits, a bad PROXY header or ClientHello, a failed TLS handshake. */
  denied: number;
  /** Bytes queued in pipes now, waiting for a slow reader. */
  queuedBytes: number;
  /** Bytes that could not be delivered because their destination was gone. */
  droppedBytes: number;
}

export interface StopSummary {
  /** Sessions that finished on their own during the drain. */
  drained: number;
  /** Sessions still open at the deadline, closed by force. */
  closed: number;
  durationMs: number;
}

export interface BoundListener {
  name: string;
  /** The bound address (`127.0.0.1:43211`, `unix:/tmp/x.sock`). */
  address: string;
  /** The bound port (0 for unix sockets). */
  port: number;
}

/** What `reload()` changed, by listen address (formatted: `127.0.0.1:11000`, `unix:/path`). */
export interface ReloadSummary {
  /** Listeners new in the config, bound before anything else changed. */
  opened: string[];
  /** Listeners gone from the config: they stop accepting, their open sessions go on. */
  closed: string[];
  /** Listeners in both configs: they keep their socket (no connection is refused meanwhile). */
  kept: string[];
  /** Kept TLS listeners whose certificates changed (new files, names, or list). */
  certificates: string[];
}

export interface RouterHandle {
  /** The bound listeners now (a reload changes them). */
  readonly listeners: BoundListener[];
  /** The live router: sessions, listeners, backends, observers (for metrics and admin endpoints). */
  readonly router: Router;
  stats(): Stats;
  /** Target states by backend name (health, open sessions, counters). */
  backends(): Map<string, readonly TargetState[]>;
  /** Stops accepting, waits for open sessions up to the drain timeout, then closes the rest. */
  stop(options?: { drainTimeout?: number | string }): Promise<StopSummary>;
  /**
   * Applies a new validated config: new sessions use it, open sessions are untouched. Throws
   * ListenError (changing nothing) when a new listener cannot be bound.
   */
  reload(config: Config): ReloadSummary;
  /**
   * Looks up the hostname targets of `config` that have no address yet, so that a following
   * `reload(config)` starts with their addresses instead of none. Never rejects.
   */
  resolve(config: Config): Promise<void>;
}

/**
 * Watches sessions (metrics, access log). Called synchronously on the forwarding path: keep it
 * cheap and never throw.
 */
export interface SessionObserver {
  /** Reads the client's address when a session closes: sessions then read it at accept, while Bun still knows it. */
  readonly readsClientAddress?: boolean;
  /** The upstream connection opened, `connectMs` after the target was picked. */
  connected?(session: Session, connectMs: number): void;
  /** The session ended; `session.reason` says why. */
  closed?(session: Session): void;
  /** A connect attempt to `target` failed; the session may retry another target next. */
  connectFailed?(session: Session, target: TargetState, reason: "connect_failed" | "connect_timeout"): void;
  /** A connection was closed at accept, before it became a session (max_connections, the open file limit, draining). */
  refused?(listener: Listener, clientHost: string, clientPort: number, why: string): void;
}

export interface Limits {
  highWaterMark: number;
  lowWaterMark: number;
}

/** Why a session ended: the access log's `reason` and the `reason` label of tcprouter_sessions_closed_total. */
export type CloseReason =
  | "client_fin" // the client ended first, cleanly
  | "upstream_fin" // the upstream ended first, cleanly
  | "client_reset"
  | "upstream_reset"
  | "write_error"
  | "idle_timeout"
  | "connect_failed"
  | "connect_timeout"
  | "no_target" // no healthy target (or every one tried)
  | "queue_timeout" // every target full for the backend's queue timeout
  | "denied" // turned away by allow/deny, per-IP limits or an untrusted PROXY source
  | "proxy_error" // a missing or malformed PROXY header
  | "tls_error" // not a TLS ClientHello (SNI mode)
  | "no_route" // SNI mode: no route for the server name and no default
  | "hello_timeout" // no complete PROXY header or ClientHello within hello_timeout
  | "target_maint" // its target was set to maint with close (admin API, `tcprouter ctl maint --close`)
  | "target_down" // its target was marked down (health check on_down = "close-sessions"), lost the primary role (Sentinel), or is a backup while a primary came back (on_up)
  | "drained"; // still open when the drain deadline passed
