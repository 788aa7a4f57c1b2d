/**
 * The shapes of a running router as its users see them: the options of `createRouter`, the
 * handle it returns with what `stats()`, `stop()` and `reload()` answer, the read-only view that
 * metrics, the admin endpoints and the supervisor read, and the observer interface that metrics
 * and the access log implement. router.ts and create-router.ts implement them; no class of the
 * proxy is exposed.
 */
import type { Backend, TargetState } from "../backend/backend.ts";
import type { SourceView } from "../backend/sources/source.ts";
import type { Config } from "../config/types.ts";
import type { Address } from "../util/address.ts";
import type { Logger } from "../util/log.ts";
import type { HandoverApi, InheritedListener } from "./handover-record.ts";
import type { Limits } from "./pipe.ts";

export type { Limits };

export interface RouterOptions {
  /** Bytes queued in one direction before its reading side is paused. Default 1 MiB. */
  highWaterMark?: number;
  /** A paused reading side resumes when the queue is at or below this. Default 256 KiB. */
  lowWaterMark?: number;
  logger?: Logger;
  /** Bind with SO_REUSEPORT so that several processes share each address (workers). Default false. */
  reusePort?: boolean;
  /** Watch every session from the start (metrics, an access log); more can be added with `view.observe`. */
  observers?: SessionObserver[];
  /** Listening sockets bound elsewhere (an older process, the supervisor, systemd) to adopt instead of binding. */
  inherited?: InheritedListener[];
}

/**
 * A session's life: `handshake` (a TLS listener's client handshake) → `preface` (PROXY header,
 * ClientHello) → `queued` (every target full) → `connecting` → `open` → `closing` (one
 * direction has ended) → `closed`. A session may close from any state.
 */
export type SessionState = "handshake" | "preface" | "queued" | "connecting" | "open" | "closing" | "closed";

/** One direction of a session, as observers see it. */
export interface PipeView {
  /** Bytes read from the sending side. */
  readonly bytes: number;
  /** Bytes waiting for a slow reader now. */
  readonly queued: number;
}

/** A listener as observers and the admin endpoints see it. */
export interface ListenerView {
  readonly name: string;
  /** Where its sessions go: a plain listener's backend, an SNI listener's default route; null: none. */
  readonly backend: Backend | null;
  /** The bound address, with the real port where port 0 was asked for. */
  readonly address: Address;
  /** Sessions open now; accepted since start; closed at accept; turned away before dialling. */
  readonly active: number;
  readonly accepted: number;
  readonly refused: number;
  readonly denied: number;
}

/** A session as observers see it. */
export interface SessionView {
  readonly state: SessionState;
  readonly listener: ListenerView;
  /** The backend it was routed to (the listener's default until routed; "-" when none). */
  readonly backend: { readonly name: string };
  /** The target it is counted on now; null before a pick and after close. */
  readonly target: TargetState | null;
  /** The last target picked ("-" before any), kept after close. */
  readonly targetKey: string;
  /** The TLS server name the client asked for, or "". */
  readonly sni: string;
  /** client → upstream, and upstream → client. */
  readonly up: PipeView;
  readonly down: PipeView;
  /** Why it ended (set once closing). */
  readonly reason: CloseReason | null;
  readonly detail: string;
  /** Date.now() at accept. */
  readonly openedAt: number;
  /** The client's address and port (the PROXY header's where there is one); "" and 0 for a unix-socket client. */
  readonly clientHost: string;
  readonly clientPort: number;
  /** `host:port`, `[v6]:port` or `unix`. */
  clientAddress(): string;
}

/** One direction of a UDP flow: bytes and datagrams read from the sending side (`queued`: datagrams held, bytes). */
export interface FlowDirectionView extends PipeView {
  readonly datagrams: number;
}

/**
 * A UDP flow (src/proxy/udp/): one client address:port and its upstream socket. Observers see
 * it with a session's fields: `state` is "preface" while a QUIC Initial is read, then "open",
 * then "closed"; `up`/`down` count datagrams too; `sni` is the QUIC ClientHello's name.
 */
export interface FlowView extends SessionView {
  readonly protocol: "udp";
  readonly up: FlowDirectionView;
  readonly down: FlowDirectionView;
}

/** Why a UDP listener dropped a datagram: the `reason` label of tcprouter_udp_dropped_total. */
export type DropReason =
  | "denied" // allow/deny
  | "max_flows" // the listener's max_flows, or the open file limit
  | "max_flows_per_ip"
  | "draining" // a new client while stopping
  | "no_target" // no target available for a new flow
  | "no_route" // sni mode: no route for the QUIC server name and no default
  | "quic_error" // sni mode: not a QUIC Initial that decrypts, or a bad ClientHello
  | "pending_full" // the flow already holds its few datagrams while it cannot send
  | "send_failed"; // the kernel took no more (send buffer full) or the socket failed

/** A UDP listener as observers and the admin endpoints see it: `active` counts flows, `accepted` flows started, `refused` and `denied` dropped datagrams. */
export interface UdpListenerView extends ListenerView {
  readonly protocol: "udp";
  /** Datagrams and bytes read from clients (up) and from upstreams (down), since start. */
  readonly datagramsUp: number;
  readonly datagramsDown: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
  /** Datagrams dropped, by reason. */
  readonly dropped: Readonly<Record<DropReason, number>>;
  /** The flows open now. */
  readonly flows: Iterable<FlowView>;
}

/** The router as metrics, the admin endpoints, the control API and the supervisor see it. */
export interface RouterView {
  readonly listeners: readonly ListenerView[];
  readonly backends: ReadonlyMap<string, Backend>;
  /** The open sessions, oldest first. */
  readonly sessions: { readonly size: number } & Iterable<SessionView>;
  /** Stopping: listeners closed, sessions draining. */
  readonly draining: boolean;
  /** Reloads applied since start. */
  readonly reloads: number;
  /** Where targets come from besides their lists (DNS, Sentinel): each reports its status by backend. */
  readonly sources: readonly SourceView[];
  stats(): Stats;
  /** The observers now (metrics, an access log). */
  readonly observers: readonly SessionObserver[];
  /** Adds an observer; returns the function that removes it. */
  observe(observer: SessionObserver): () => void;
  /** The UDP listeners (docs/udp.md); absent or empty: none. */
  readonly udpListeners?: readonly UdpListenerView[];
  /** Closes the sessions counted on `target` with `reason`, logs one line; returns how many. */
  closeSessions(target: TargetState, reason: "target_down" | "target_maint", why: string): number;
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
  /** Sessions closed because their target went down (health check on_down, a Sentinel switch, on_up for backups). */
  targetDown: number;
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
  /** The running router, read-only (metrics, admin endpoints); `observe` adds an observer. */
  readonly view: RouterView;
  /** Hands this router to a new process, or takes one over (an upgrade in place: proxy/handover.ts). */
  readonly handover: HandoverApi;
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
  connected?(session: SessionView, connectMs: number): void;
  /** The session ended; `session.reason` says why. */
  closed?(session: SessionView): void;
  /** A connect attempt to `target` failed; the session may retry another target next. */
  connectFailed?(session: SessionView, target: TargetState, reason: "connect_failed" | "connect_timeout"): void;
  /** A UDP flow ended; `flow.reason` says why. */
  flowClosed?(flow: FlowView): void;
  /** A connection was closed at accept, before it became a session (max_connections, the open file limit, draining). */
  refused?(listener: ListenerView, clientHost: string, clientPort: number, why: string): void;
}

/** Why a session ended: the access log's `reason` and the `reason` label of tcprouter_sessions_closed_total. */
export type CloseReason =
  | "client_fin" // the client ended first, cleanly
  | "upstream_fin" // the upstream ended first, cleanly
  | "client_reset"
  | "upstream_reset"
  | "write_error"
  | "idle_timeout"
  | "write_timeout" // queued bytes waited write_timeout and their reader took none
  | "half_closed_timeout" // one direction ended and nothing moved for half_closed_timeout
  | "max_duration" // open for max_session_duration
  | "connect_failed"
  | "connect_timeout"
  | "no_target" // no healthy target (or every one tried)
  | "queue_timeout" // every target full for the backend's queue timeout
  | "denied" // turned away by allow/deny, per-IP limits or an untrusted PROXY source
  | "proxy_error" // a missing or malformed PROXY header
  | "tls_error" // not a TLS ClientHello (SNI mode)
  | "no_route" // SNI mode: no route for the server name and no default
  | "hello_timeout" // no complete TLS handshake, PROXY header or ClientHello within hello_timeout
  | "target_maint" // its target was set to maint with close (admin API, `tcprouter ctl maint --close`)
  | "target_down" // its target was marked down (health check on_down = "close-sessions"), lost the primary role (Sentinel), or is a backup while a primary came back (on_up)
  | "handed_over" // moved to a new process by an upgrade (the old process logs it; the session goes on there)
  | "responses" // a UDP flow got its listener's `responses` datagrams from upstream
  | "port_unreachable" // a UDP flow's target answered ICMP port unreachable (ECONNREFUSED)
  | "listener_closed" // a UDP flow whose listener a reload removed (replies could no longer reach the client)
  | "drained"; // still open when the drain deadline passed
