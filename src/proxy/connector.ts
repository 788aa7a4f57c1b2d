/**
 * The connector: the stage that gets a session its upstream connection. It picks a target
 * from the backend (waiting in the backend's queue while every target is full), dials it with
 * the listener's connect timeout, retries other targets while the backend's `retries` last,
 * writes a PROXY header first where the backend sends one, and starts TLS where it dials TLS.
 *
 * One `Attempt` per connect is the upstream socket's data, so a late socket of an abandoned
 * attempt is told apart and terminated. The upstream socket handlers are defined once here and
 * forward to the attempt's session through `UpstreamOwner`.
 *
 * A backend's (or a target's) `source` binds the local address of its connections; its
 * `tcp_keepalive` and `tcp_user_timeout` are set on each upstream socket once connected
 * (`setTcpOptions` in tcp-options.ts, which the listener uses for client sockets too).
 */
import type { Socket } from "bun";
import type { Backend, TargetState, UpstreamTls, Waiter } from "../backend/backend.ts";
import { connectErrorText, errorCode } from "../util/errors.ts";
import { event, heldBack } from "../util/log.ts";
import type { RouterContext } from "./context.ts";
import type { SessionView } from "./handle.ts";
import type { Pipe } from "./pipe.ts";
import { hasTcpOptions, setTcpOptions } from "./tcp-options.ts";

/** What the connector needs of its session. */
export interface UpstreamOwner extends SessionView {
  readonly router: RouterContext;
  /** The open upstream socket, once connected; null before and after. */
  readonly upstream: Socket<Attempt> | null;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly closed: boolean;
  /** ms for one connect attempt; 0 = no limit (for the log line; the session clock counts it). */
  connectTimeout(): number;
  /** The PROXY header to send this target first. */
  proxyHeader(version: "v1" | "v2"): Uint8Array;
  /** The session waits in the backend's queue. */
  waiting(): void;
  /** The upstream connection is open (and verified): the pipes can run. */
  connected(socket: Socket<Attempt>): void;
  /** No connection could be had: the session closes. */
  gaveUp(reason: "connect_failed" | "connect_timeout" | "no_target" | "queue_timeout", detail: string): void;
  ended(side: "upstream"): void;
  socketClosed(side: "upstream", error: Error | undefined): void;
}

/** What dial passes to Bun.connect (localAddress is Bun's, missing from its types). */
interface ConnectOptions {
  hostname?: string;
  port?: number;
  unix?: string;
  socket: typeof upstreamHandlers | typeof proxyFirstHandlers;
  data: Attempt;
  allowHalfOpen: true;
  tls?: UpstreamTls;
  localAddress?: string;
}

/** One connect attempt: the upstream socket's data. */
export class Attempt {
  constructor(
    readonly connector: Connector,
    readonly session: UpstreamOwner,
    /** The target dialled; null for an adopted socket whose target this config no longer has. */
    readonly target: TargetState | null,
  ) {}
}

export class Connector implements Waiter {
  /** The target dialled (and counted on) now; null before a pick and after release. */
  target: TargetState | null = null;
  /** The key of the last target picked ("-" before any), kept for logs after release. */
  targetKey = "-";
  /** The connect attempt under way or done; an older attempt's socket is dropped. */
  attempt: Attempt | null = null;
  /** Why the last attempt failed (`KEY reason`), for the final line. */
  detail = "";
  /** performance.now() when the current attempt started (kept only when observed). */
  private dialedAt = 0;
  /** The queue deadline while waiting (the connect deadline is counted by the session clock: tick). */
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Sweeps of the session clock since the current attempt was dialled; -1: no attempt under way. */
  private sweeps = -1;
  /** The clock (performance.now) at the first sweep after the current attempt was dialled. */
  private dialFrom = 0;
  /** Targets whose connect failed for this session (retries skip them). */
  private tried: Set<TargetState> | null = null;
  private queued = false;

  constructor(
    private readonly session: UpstreamOwner,
    readonly backend: Backend,
  ) {}

  /**
   * Picks a target and opens the upstream connection. When every target is full the session
   * waits for a free place, up to the backend's queue timeout.
   */
  dial(): void {
    const backend = this.backend;
    const session = this.session;
    const target = backend.acquire(session, this.tried);
    if (target === null) {
      if (backend.queueTimeout > 0 && backend.full(this.tried)) {
        const woken = this.queued; // woken but the free place was no use: keep the turn
        if (!this.queued) {
          this.queued = true;
          this.timer = setTimeout(queueTimedOut, backend.queueTimeout, this);
          session.waiting();
        }
        return backend.enqueue(this, woken);
      }
      session.router.counters.noTarget++;
      const last = this.detail ? ` (last: ${this.detail})` : "";
      const held = backend.failureLog.allow();
      if (held >= 0) {
        const client = session.clientAddress();
        const message = `client ${client} → backend ${backend.name}: no target available${last}${heldBack(held)}`;
        session.router.log.warn(event(message, { client, backend: backend.name, reason: "no_target", detail: this.detail, suppressed: held }));
      }
      return session.gaveUp("no_target", this.detail);
    }
    if (this.queued) {
      this.queued = false;
      clearTimeout(this.timer);
    }
    this.target = target;
    this.targetKey = target.key;
    if (session.router.observers.length > 0) this.dialedAt = performance.now();
    const address = target.address;
    this.attempt = new Attempt(this, session, target);
    // PROXY + TLS: the header goes first in clear, then the handshake (proxyFirstHandlers).
    const clearFirst = backend.tls !== null && backend.sendProxy !== null;
    const socket = clearFirst ? proxyFirstHandlers : upstreamHandlers;
    // One object literal per shape, no spreads: a spread costs a runtime call per connect.
    const options: ConnectOptions =
      address.kind === "unix"
        ? { unix: address.path, socket, data: this.attempt, allowHalfOpen: true }
        : { hostname: address.host, port: address.port, socket, data: this.attempt, allowHalfOpen: true };
    if (backend.tls !== null && !clearFirst) options.tls = upstreamTls(backend.tls, target);
    // localAddress binds the source address (Bun has it, its types do not).
    const source = target.source ?? backend.source;
    if (source !== null && address.kind !== "unix") options.localAddress = source;
    (Bun.connect as (options: ConnectOptions) => Promise<unknown>)(options).catch(ignore); // connectError reports the failure
    this.sweeps = 0;
  }

  /**
   * One sweep of the session clock while an attempt is under way (Session.tick): fails it
   * once the clock is `limit` ms past the first sweep after the dial (retried like a refused
   * connect while retries last).
   */
  tick(limit: number, clock: number): void {
    if (limit === 0 || this.sweeps < 0) return;
    if (++this.sweeps === 1) this.dialFrom = clock;
    else if (clock - this.dialFrom >= limit) this.failed("connect_timeout", `connect timed out after ${this.session.connectTimeout()} ms`);
  }

  /** The backend has a free place again (see Backend.release). */
  dequeued(): void {
    if (!this.session.closed) this.dial();
  }

  /** An attempt's socket opened. */
  opened(socket: Socket<Attempt>): void {
    const session = this.session;
    // A connect that opens after its attempt timed out (or after the session ended) is dropped.
    if (session.closed || session.upstream !== null || socket.data !== this.attempt) return void socket.terminate();
    if (this.backend.tls?.rejectUnauthorized && socket.authorized === false) {
      // Fail (and maybe retry) first: terminate() runs the close handler at once, which must
      // then see a finished attempt.
      this.failed("connect_failed", `TLS: ${socket.getAuthorizationError()?.message ?? "certificate not verified"}`);
      return void socket.terminate();
    }
    this.sweeps = -1;
    const controls = this.backend.controls;
    if (controls !== null && hasTcpOptions(controls)) setTcpOptions(socket, controls, session.router.log);
    target(this.attempt).sessions++;
    const observers = session.router.observers;
    if (observers.length > 0) {
      const connectMs = performance.now() - this.dialedAt;
      for (const observer of observers) observer.connected?.(session, connectMs);
    }
    session.connected(socket);
    if (this.backend.sendProxy !== null && this.backend.tls === null) session.up.unshift(session.proxyHeader(this.backend.sendProxy));
    session.up.flush();
  }

  /**
   * A connect attempt failed or timed out: retried on another target while retries are left.
   * A timed-out attempt that opens later is terminated (see opened).
   */
  failed(reason: "connect_failed" | "connect_timeout", detail: string): void {
    const session = this.session;
    if (session.closed || session.upstream !== null || this.target === null) return;
    this.sweeps = -1;
    const backend = this.backend;
    const target = this.target;
    this.target = null;
    backend.connectFailed(target);
    for (const observer of session.router.observers) observer.connectFailed?.(session, target, reason);
    backend.release(target);
    session.router.counters.connectFailures++;
    this.detail = `${target.key} ${detail}`;
    const tried = (this.tried ??= new Set());
    tried.add(target);
    if (tried.size <= backend.retries) {
      session.router.log.debug(`client ${session.clientAddress()} → ${backend.name} ${target.key}: ${detail}, retrying`);
      return this.dial();
    }
    const held = backend.failureLog.allow();
    if (held >= 0) {
      const client = session.clientAddress();
      const message = `client ${client} → ${backend.name} ${target.key}: ${detail}${heldBack(held)}`;
      session.router.log.warn(event(message, { client, backend: backend.name, target: target.key, reason, detail, suppressed: held }));
    }
    session.gaveUp(reason, this.detail);
  }

  queueTimedOut(): void {
    const session = this.session;
    if (session.closed || !this.queued) return;
    this.queued = false;
    this.backend.dequeue(this);
    session.router.counters.noTarget++;
    const backend = this.backend;
    const held = backend.failureLog.allow();
    if (held >= 0) {
      const client = session.clientAddress();
      const message = `client ${client} → backend ${backend.name}: no target free for ${backend.queueTimeout} ms${heldBack(held)}`;
      session.router.log.warn(event(message, { client, backend: backend.name, reason: "queue_timeout", suppressed: held }));
    }
    session.gaveUp("queue_timeout", "");
  }

  /** The session ended: stop the timer, leave the queue, give the target's place back. */
  release(): void {
    if (this.queued) {
      this.queued = false;
      clearTimeout(this.timer);
      this.backend.dequeue(this);
    }
    if (this.target !== null) {
      this.backend.release(this.target);
      this.target = null;
    }
  }

  /**
   * In a new process after an upgrade: the upstream socket of a session handed over, adopted
   * from its descriptor (already connected; nothing is dialled). `target` is counted already
   * (Backend.adopt); null when this config no longer has it (`key` is kept for the logs).
   */
  static adopted(session: UpstreamOwner, backend: Backend, target: TargetState | null, key: string, fd: number): Connector {
    const connector = new Connector(session, backend);
    connector.target = target;
    connector.targetKey = key;
    connector.attempt = new Attempt(connector, session, target);
    const options = { fd, socket: adoptedUpstreamHandlers, data: connector.attempt, allowHalfOpen: true };
    (Bun.connect as unknown as (options: unknown) => Promise<unknown>)(options).catch(ignore);
    return connector;
  }

  /** An adopted upstream socket is open: the pipes run, the queued bytes go first. */
  adoptedOpen(socket: Socket<Attempt>): void {
    const session = this.session;
    if (session.closed || socket.data !== this.attempt) return void socket.close();
    session.connected(socket);
    session.up.flush();
  }

  /**
   * PROXY to a TLS target: the plain connection is open; write the header in clear, then start
   * TLS on the same connection. The TLS socket's `open` (after the handshake) continues as usual.
   */
  clearProxyThenTls(raw: Socket<Attempt>): void {
    const attempt = raw.data;
    const session = this.session;
    if (session.closed || attempt !== this.attempt || this.backend.tls === null) return void raw.terminate();
    const header = session.proxyHeader(this.backend.sendProxy!);
    if (raw.write(header) !== header.length) return void raw.terminate(); // a fresh socket takes ~100 bytes
    raw.upgradeTLS({ data: attempt, tls: upstreamTls(this.backend.tls, target(attempt)), socket: upstreamHandlers });
  }

  /** Why a connect failed, in a log line's words: the bare code (ECONNREFUSED), and what a source address has to do with it. */
  errorText(error: Error): string {
    const text = connectErrorText(error);
    const source = this.target?.source ?? this.backend.source;
    if (source === null) return text;
    const code = errorCode(error);
    if (code === "EADDRNOTAVAIL") return `${text} (source ${source} is not an address of this machine)`;
    if (code === "EINVAL" || code === "EAFNOSUPPORT") return `${text} (source ${source} cannot reach this target's address family)`;
    return text;
  }
}

/** Without a configured server name, a target found by DNS is verified (and asked) by its hostname, not its IP. */
export function upstreamTls(tls: UpstreamTls, target: TargetState): UpstreamTls {
  if (tls.serverName !== undefined || target.name === target.key) return tls;
  const host = target.name.slice(0, target.name.lastIndexOf(":"));
  return { ...tls, serverName: host };
}

function ignore(): void {}

/** The target of an attempt that dialled one (every attempt but an adopted socket's). */
function target(attempt: Attempt): TargetState {
  return attempt.target!;
}

function queueTimedOut(connector: Connector): void {
  connector.queueTimedOut();
}

/** The plain connection of a PROXY + TLS attempt: it only writes the header and starts TLS; the TLS socket carries the session. */
const proxyFirstHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Attempt>) {
    socket.data.connector.clearProxyThenTls(socket);
  },
  data() {},
  close() {},
  connectError(socket: Socket<Attempt>, error: Error) {
    const attempt = socket.data;
    if (attempt !== undefined && attempt === attempt.connector.attempt) attempt.connector.failed("connect_failed", attempt.connector.errorText(error));
  },
  error() {},
};

/** Handlers of upstream sockets (Bun.connect). `socket.data` is the connect attempt. */
const upstreamHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Attempt>) {
    socket.data.connector.opened(socket);
  },
  data(socket: Socket<Attempt>, chunk: Buffer) {
    const session = socket.data.session;
    if (session.upstream === socket) session.down.push(chunk);
  },
  drain(socket: Socket<Attempt>) {
    const session = socket.data.session;
    if (session.upstream === socket) session.up.flush();
  },
  end(socket: Socket<Attempt>) {
    const session = socket.data.session;
    if (session.upstream === socket) session.ended("upstream");
  },
  close(socket: Socket<Attempt>, error?: Error) {
    const attempt = socket.data;
    const session = attempt.session;
    if (session.upstream === socket) session.socketClosed("upstream", error);
    // Closed before `open`: a TLS handshake that failed. Fail the attempt now, not at the connect timeout.
    else if (session.upstream === null && attempt === attempt.connector.attempt)
      attempt.connector.failed("connect_failed", error ? `TLS: ${connectErrorText(error)}` : "TLS handshake failed");
  },
  connectError(socket: Socket<Attempt>, error: Error) {
    const attempt = socket.data;
    if (attempt !== undefined && attempt === attempt.connector.attempt) attempt.connector.failed("connect_failed", attempt.connector.errorText(error));
  },
  error(socket: Socket<Attempt>, error: Error) {
    socket.data?.session.router.log.debug(`upstream socket error: ${connectErrorText(error)}`);
  },
};

/** Handlers of an upstream socket adopted from an older process: already connected. */
const adoptedUpstreamHandlers = {
  ...upstreamHandlers,
  open(socket: Socket<Attempt>) {
    socket.data.connector.adoptedOpen(socket);
  },
};
