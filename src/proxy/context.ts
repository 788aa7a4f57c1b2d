/**
 * What the stages of the accept path see of the objects that own them: a session sees its
 * listener as a `ListenerContext` and the router as a `RouterContext`, never the classes. So the
 * proxy folder imports in one direction only: router → listener → session → connector, preface,
 * pipe (and this file, route.ts, admission.ts, handle.ts, which import none of them).
 */
import type { Socket } from "bun";
import type { Address } from "../util/address.ts";
import type { Logger, LogLimiter } from "../util/log.ts";
import type { Backend } from "../backend/backend.ts";
import type { ListenerTlsConfig, SessionControls } from "../config/types.ts";
import type { CidrSet } from "../util/cidr.ts";
import type { Admission, AdmissionRules } from "./admission.ts";
import type { ListenerView, SessionObserver, SessionView } from "./handle.ts";
import type { Limits } from "./pipe.ts";
import type { PrefaceStep } from "./preface/preface.ts";
import type { RateLimits } from "./rate.ts";
import type { Route } from "./route.ts";
import type { InheritedListener } from "./handover-record.ts";

export interface ListenerOptions extends AdmissionRules {
  /** Unique in a router; used in logs and metrics. */
  name: string;
  address: Address;
  /** Where sessions go: the default route of a plain listener, or the SNI table with its default. */
  route: Route;
  /** Sessions open at once through this listener; 0 = no limit. */
  maxConnections: number;
  /** ms for one upstream connect attempt; 0 = no limit. */
  connectTimeout: number;
  /** ms without bytes either way after which a session is closed; 0 = off. */
  idleTimeout: number;
  /** ms queued bytes may wait for their reader to take any; 0 = off. */
  writeTimeout: number;
  /** ms a half-closed session may stay idle; 0 = off. */
  halfClosedTimeout: number;
  /** ms after accept at which a session is closed; 0 = off. */
  maxSessionDuration: number;
  /** ms a client may take for its TLS handshake (tls) and its preface (PROXY header, ClientHello). */
  helloTimeout: number;
  /** Expect a PROXY protocol header (v1 or v2) from these sources; null = none. */
  acceptProxy: CidrSet | null;
  /** Terminate TLS with these certificates, chosen by SNI (certificates.ts); null = plain TCP. */
  tls: ListenerTlsConfig | null;
  /** Bandwidth limits of its sessions, with their per-address buckets (rate.ts); null = none. */
  rates: RateLimits | null;
  /** TCP options of its client sockets, set at accept (tcp_keepalive, tcp_user_timeout); null = none. */
  tcp: SessionControls | null;
}

/** The router's counters (`stats()` adds what open sessions hold). */
export interface Counters {
  totalSessions: number;
  bytesUp: number;
  bytesDown: number;
  connectFailures: number;
  noTarget: number;
  refused: number;
  denied: number;
  droppedBytes: number;
  reloads: number;
  targetDown: number;
}

/** What listeners and sessions see of their router. */
export interface RouterContext {
  readonly counters: Counters;
  readonly observers: readonly SessionObserver[];
  readonly log: Logger;
  readonly limits: Limits;
  /** Sessions the open file limit leaves room for; 0 = unknown (no cap). */
  readonly capacity: number;
  readonly draining: boolean;
  readonly reusePort: boolean;
  /** Sessions open now. */
  readonly sessionCount: number;
  /** Sessions in their TLS handshake or preface now (their listener waits for the client). */
  prefacing: number;
  /** Listening sockets to adopt instead of binding, by formatted listen address. */
  readonly inherited: ReadonlyMap<string, InheritedListener>;
  sessionOpened(session: SessionView): void;
  sessionClosed(session: SessionView): void;
}

/** What a session sees of its listener. */
export interface ListenerContext extends ListenerView {
  readonly name: string;
  /** Replaced as a whole by a reload; a session reads it when it needs a value. */
  readonly options: ListenerOptions;
  readonly router: RouterContext;
  readonly admission: Admission;
  /** Rate-limits the warn lines of clients turned away. */
  readonly denials: LogLimiter;
  /** Counts a client turned away (source checks, a bad preface, a failed TLS handshake). */
  countDenied(): void;
  /** The preface steps for a new session, in order; empty when the listener reads none. */
  prefaceSteps(): PrefaceStep[];
  /** A session of this listener ended. */
  sessionEnded(): void;
}

/** A client socket: `socket.data` is its session, or undefined for a connection refused at accept. */
// biome-ignore lint/suspicious/noExplicitAny: the session type lives in session.ts, which imports this file.
export type ClientSocket = Socket<any>;

/** The backend a session starts with before it is routed (SNI mode), and keeps when turned away first. */
export type { Backend };
