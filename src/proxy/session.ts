/**
 * A session is one accepted client connection plus the upstream connection dialled for it.
 *
 * The session owns both sockets: it is the only code that closes them, and it closes both.
 * Bytes move through two pipes (`up`: client → upstream, `down`: upstream → client). The
 * session ends when both pipes are done (each FIN passed on, or its peer gone), or at once on
 * a reset, a write error, an idle timeout, a failed connect or a drain deadline.
 *
 * Socket handlers are module-level functions; per-session state lives in `socket.data`.
 */
import type { Socket } from "bun";
import { DEFAULTS } from "../config/defaults.ts";
import { formatHostPort } from "../util/address.ts";
import { NO_BACKEND, type Backend, type TargetState } from "../backend/backend.ts";
import { DEBUG, event, heldBack } from "../util/log.ts";
import { Pipe } from "./pipe.ts";
import { Preface } from "./preface.ts";
import { Attempt, errorText, proxyFirstHandlers, upstreamHandlers, upstreamTls } from "./upstream.ts";
import { encodeProxyV1, encodeProxyV2 } from "../protocol/proxy-protocol.ts";
import type { ClientSocket, Listener } from "./listener.ts";
import type { Router } from "./router.ts";
import type { CloseReason, SessionObserver } from "./handle.ts";

export class Session {
  readonly up: Pipe;
  readonly down: Pipe;
  upstream: Socket<Attempt> | null = null;
  /** The backend of the listener when the session started (a reload may change the listener's), or the SNI route's. */
  backend: Backend;
  /** The target dialled (and counted on) now; null before a pick and after release. */
  target: TargetState | null = null;
  /** The connect attempt under way or done; an older attempt's socket is dropped. */
  attempt: Attempt | null = null;
  /** The key of the last target picked ("-" before any), kept for logs after release. */
  targetKey = "-";
  /** performance.now() when the current connect attempt started (kept only when observed). */
  dialedAt = 0;
  /** Sweeps of the idle timer since bytes last moved. */
  idleTicks = 0;
  closed = false;
  reason: CloseReason | null = null;
  detail = "";
  readonly openedAt = Date.now();
  /** The client's address; null until read (see clientHost). */
  private host: string | null = null;
  /** The client's port; -1 until read (see clientPort). */
  private port = -1;
  /** The TLS server name the client asked for (SNI mode), or "". */
  sni = "";
  /** Reading a PROXY header or ClientHello before dialling; null once done (or never). */
  preface: Preface | null = null;
  /** The address the client dialled, as a PROXY header gave it (relayed by send_proxy); null = the listener's. */
  destination: { host: string; port: number } | null = null;
  /** Counted in the listener's sessions per client address. */
  countedIp = false;
  /** The last pipe left its FIN to close(2) (see Pipe.finish): close that socket, do not end() it. */
  private finByClose = false;
  readonly router: Router;
  /** The connect deadline, or the queue deadline while waiting for a target. */
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Targets whose connect failed for this session (retries skip them). */
  private tried: Set<TargetState> | null = null;
  private queued = false;

  constructor(
    readonly listener: Listener,
    readonly client: ClientSocket,
  ) {
    this.router = listener.router;
    this.backend = listener.backend ?? NO_BACKEND; // SNI mode: the route sets it
    // The address and port cost a getpeername(2) each, and Bun forgets them once the socket
    // closes: read them at once only when something reads them after the client may have
    // closed (the debug close line, the access log); else when first used, while it is open.
    if (this.router.log.level >= DEBUG || this.router.observers.some(readsClientAddress)) {
      this.host = client.remoteAddress ?? "";
      this.port = client.remotePort ?? 0;
    }
    this.up = new Pipe(this, client, null);
    this.down = new Pipe(this, null, client);
  }

  /** The client's address (the PROXY header's where there is one); "" for a unix-socket client. */
  get clientHost(): string {
    if (this.host === null) {
      // undefined: a unix-socket client, or one that closed before anything asked (a reload
      // that raised the log level to debug while it was open).
      this.host = this.client.remoteAddress ?? (this.listener.options.address.kind === "unix" ? "" : "?");
    }
    return this.host;
  }

  /** The client's port (the PROXY header's where there is one); 0 for a unix-socket client. */
  get clientPort(): number {
    if (this.port < 0) this.port = this.client.remotePort ?? 0;
    return this.port;
  }

  get limits() {
    return this.router.limits;
  }

  /** Reads a PROXY header and/or ClientHello before dialling, for up to `timeout` ms. */
  readPreface(acceptProxy: boolean, sni: boolean, timeout: number): void {
    this.preface = new Preface(this, acceptProxy, sni);
    if (timeout > 0) this.timer = setTimeout(prefaceTimedOut, timeout, this);
  }

  prefaceDone(): void {
    clearTimeout(this.timer);
    this.dial();
  }

  /** The client was turned away before any upstream was dialled: one warn line (per second), closed. */
  prefaceFailed(reason: CloseReason, detail: string): void {
    if (this.closed) return;
    this.listener.denied++;
    this.router.stats.denied++;
    const held = this.listener.denials.allow();
    if (held >= 0) {
      const client = this.clientAddress();
      const message = `listener ${this.listener.options.name}: client ${client}: ${detail}, closed${heldBack(held)}`;
      this.router.log.warn(event(message, { listener: this.listener.options.name, client, reason, detail, suppressed: held }));
    }
    this.close(reason, detail);
  }

  setClientAddress(host: string, port: number, destination: { host: string; port: number } | null): void {
    this.host = host;
    this.port = port;
    this.destination = destination;
  }

  admit(): boolean {
    return this.listener.admit(this);
  }

  /**
   * Picks a target and opens the upstream connection. Client bytes that arrive meanwhile are
   * queued in `up`. When every target is full the session waits for a free place, up to the
   * backend's queue timeout.
   */
  dial(): void {
    const backend = this.backend;
    const target = backend.acquire(this, this.tried);
    if (target === null) {
      if (backend.queueTimeout > 0 && backend.full(this.tried)) {
        const woken = this.queued; // woken but the free place was no use: keep the turn
        if (!this.queued) {
          this.queued = true;
          this.timer = setTimeout(queueTimedOut, backend.queueTimeout, this);
        }
        return backend.enqueue(this, woken);
      }
      this.router.stats.noTarget++;
      const last = this.detail ? ` (last: ${this.detail})` : "";
      const held = backend.failureLog.allow();
      if (held >= 0) {
        const client = this.clientAddress();
        const message = `client ${client} → backend ${backend.name}: no target available${last}${heldBack(held)}`;
        this.router.log.warn(event(message, { client, backend: backend.name, reason: "no_target", detail: this.detail, suppressed: held }));
      }
      return this.close("no_target", this.detail);
    }
    if (this.queued) {
      this.queued = false;
      clearTimeout(this.timer);
    }
    this.target = target;
    this.targetKey = target.key;
    if (this.router.observers.length > 0) this.dialedAt = performance.now();
    const address = target.address;
    this.attempt = new Attempt(this, target);
    // PROXY + TLS: the header goes first in clear, then the handshake (proxyFirstHandlers).
    const clearFirst = backend.tls !== null && backend.sendProxy !== null;
    const tls = backend.tls === null || clearFirst ? {} : { tls: upstreamTls(backend.tls, target) };
    const options = { socket: clearFirst ? proxyFirstHandlers : upstreamHandlers, data: this.attempt, allowHalfOpen: true, ...tls };
    const pending =
      address.kind === "unix" ? Bun.connect({ ...options, unix: address.path }) : Bun.connect({ ...options, hostname: address.host, port: address.port });
    pending.catch(ignore); // connectError reports the failure
    const timeout = this.listener.options.connectTimeout;
    if (timeout > 0) this.timer = setTimeout(connectTimedOut, timeout, this);
  }

  /** The backend has a free place again (see Backend.release). */
  dequeued(): void {
    if (!this.closed) this.dial();
  }

  upstreamOpened(socket: Socket<Attempt>): void {
    // A connect that opens after its attempt timed out (or after the session ended) is dropped.
    if (this.closed || this.upstream !== null || socket.data !== this.attempt) return void socket.terminate();
    if (this.backend.tls?.rejectUnauthorized && socket.authorized === false) {
      // Fail (and maybe retry) first: terminate() runs the close handler at once, which must
      // then see a finished attempt.
      this.connectFailed("connect_failed", `TLS: ${socket.getAuthorizationError()?.message ?? "certificate not verified"}`);
      return void socket.terminate();
    }
    clearTimeout(this.timer);
    this.upstream = socket;
    this.attempt.target.sessions++;
    const observers = this.router.observers;
    if (observers.length > 0) {
      const connectMs = performance.now() - this.dialedAt;
      for (const observer of observers) observer.connected?.(this, connectMs);
    }
    this.up.to = socket;
    this.down.from = socket;
    if (this.backend.sendProxy !== null && this.backend.tls === null) this.up.unshift(this.proxyHeader(this.backend.sendProxy));
    this.up.flush();
  }

  /**
   * A connect attempt failed or timed out: retried on another target while retries are left.
   * A timed-out attempt that opens later is terminated (see upstreamOpened).
   */
  connectFailed(reason: "connect_failed" | "connect_timeout", detail: string): void {
    if (this.closed || this.upstream !== null || this.target === null) return;
    clearTimeout(this.timer);
    const backend = this.backend;
    const target = this.target;
    this.target = null;
    backend.connectFailed(target);
    for (const observer of this.router.observers) observer.connectFailed?.(this, target, reason);
    backend.release(target);
    this.router.stats.connectFailures++;
    this.detail = `${target.key} ${detail}`;
    const tried = (this.tried ??= new Set());
    tried.add(target);
    if (tried.size <= backend.retries) {
      this.router.log.debug(`client ${this.clientAddress()} → ${backend.name} ${target.key}: ${detail}, retrying`);
      return this.dial();
    }
    const held = backend.failureLog.allow();
    if (held >= 0) {
      const client = this.clientAddress();
      const message = `client ${client} → ${backend.name} ${target.key}: ${detail}${heldBack(held)}`;
      this.router.log.warn(event(message, { client, backend: backend.name, target: target.key, reason, detail, suppressed: held }));
    }
    this.close(reason, this.detail);
  }

  queueTimedOut(): void {
    if (this.closed || !this.queued) return;
    this.queued = false;
    this.backend.dequeue(this);
    this.router.stats.noTarget++;
    const backend = this.backend;
    const held = backend.failureLog.allow();
    if (held >= 0) {
      const client = this.clientAddress();
      const message = `client ${client} → backend ${backend.name}: no target free for ${backend.queueTimeout} ms${heldBack(held)}`;
      this.router.log.warn(event(message, { client, backend: backend.name, reason: "queue_timeout", suppressed: held }));
    }
    this.close("queue_timeout");
  }

  /**
   * Asked by a pipe about to pass its FIN on: true when it is the last pipe and its `to` has
   * sent FIN already (nothing left to read there). The session closes next, and close(2) sends
   * the FIN after the queued bytes, so the pipe skips shutdown(2) and `to` is closed, not ended.
   * TLS sockets keep shutdown() and end() (close_notify).
   */
  closesAfter(pipe: Pipe): boolean {
    const other = pipe === this.up ? this.down : this.up;
    const tls = pipe === this.up ? this.backend.tls !== null : this.listener.options.tls != null;
    return (this.finByClose = other.done && other.ended && !tls);
  }

  /** Called by a pipe once it has passed its FIN on. */
  pipeDone(): void {
    if (this.up.done && this.down.done) this.close(this.reason ?? "client_fin");
  }

  /** One side sent FIN. */
  ended(side: "client" | "upstream"): void {
    this.reason ??= side === "client" ? "client_fin" : "upstream_fin";
    (side === "client" ? this.up : this.down).end();
  }

  /**
   * One side's socket closed. A reset closes the session at once. A clean close is a FIN for
   * the pipe reading that socket, and the pipe writing to it is done: the session closes as
   * soon as the other pipe has written what it holds.
   */
  socketClosed(side: "client" | "upstream", error: Error | undefined): void {
    if (this.closed) return;
    if (side === "client") this.client.data = undefined as unknown as Session;
    else this.upstream = null;
    const into = side === "client" ? this.down : this.up;
    const from = side === "client" ? this.up : this.down;
    if (error !== undefined) return this.close(side === "client" ? "client_reset" : "upstream_reset", errorText(error));
    this.reason ??= side === "client" ? "client_fin" : "upstream_fin";
    this.router.stats.droppedBytes += into.abandon();
    into.to = null;
    from.from = null;
    from.end();
    if (from.done) this.close(this.reason);
  }

  writeFailed(socket: Socket<unknown>): void {
    this.close("write_error", socket === this.client ? "client write failed" : "upstream write failed");
  }

  /** Ends the session: closes whichever sockets are still open. Idempotent. */
  close(reason: CloseReason, detail = ""): void {
    if (this.closed) return;
    this.closed = true;
    this.reason = reason;
    this.detail = detail;
    clearTimeout(this.timer);
    if (this.queued) this.backend.dequeue(this);
    if (this.target !== null) {
      this.backend.release(this.target);
      this.target = null;
    }
    const dropped = this.up.abandon() + this.down.abandon();
    this.router.stats.droppedBytes += dropped;
    if (this.upstream !== null) {
      const upstream = this.upstream;
      this.upstream = null;
      if (this.finByClose) upstream.close();
      else upstream.end();
    }
    if (this.client.data === this) {
      if (this.finByClose) this.client.close();
      else this.client.end();
    }
    this.preface = null;
    this.listener.sessionEnded(this);
    this.router.sessionClosed(this);
    if (this.router.log.level >= DEBUG) this.logClose();
  }

  /**
   * PROXY to a TLS target: the plain connection is open; write the header in clear, then start
   * TLS on the same connection. The TLS socket's `open` (after the handshake) continues as usual.
   */
  clearProxyThenTls(raw: Socket<Attempt>): void {
    const attempt = raw.data;
    if (this.closed || attempt !== this.attempt || this.backend.tls === null) return void raw.terminate();
    const header = this.proxyHeader(this.backend.sendProxy!);
    if (raw.write(header) !== header.length) return void raw.terminate(); // a fresh socket takes ~100 bytes
    raw.upgradeTLS({ data: attempt, tls: upstreamTls(this.backend.tls, attempt.target), socket: upstreamHandlers });
  }

  private proxyHeader(version: "v1" | "v2"): Uint8Array {
    const source = this.clientHost === "" ? null : { host: this.clientHost, port: this.clientPort };
    const local = this.client.localAddress;
    const destination = this.destination ?? (local ? { host: local, port: this.client.localPort } : null);
    return version === "v1" ? encodeProxyV1(source, destination) : encodeProxyV2(source, destination);
  }

  clientAddress(): string {
    return this.clientHost === "" ? "unix" : formatHostPort(this.clientHost, this.clientPort);
  }

  private logClose(): void {
    const ms = Date.now() - this.openedAt;
    const detail = this.detail ? ` (${this.detail})` : "";
    this.router.log.debug(
      `session ${this.clientAddress()}${this.sni === "" ? "" : ` sni=${this.sni}`} → ${this.backend.name} ${this.targetKey}: ${this.up.bytes} B up, ${this.down.bytes} B down, ${ms} ms, ${this.reason}${detail}`,
    );
  }
}

function ignore(): void {}

function connectTimedOut(session: Session): void {
  session.connectFailed("connect_timeout", `connect timed out after ${session.listener.options.connectTimeout} ms`);
}

function prefaceTimedOut(session: Session): void {
  if (session.preface !== null)
    session.prefaceFailed(
      "hello_timeout",
      `no complete ${session.listener.options.routes ? "ClientHello" : "PROXY header"} within ${session.listener.options.helloTimeout ?? DEFAULTS.helloTimeout} ms`,
    );
}

function queueTimedOut(session: Session): void {
  session.queueTimedOut();
}

function readsClientAddress(observer: SessionObserver): boolean {
  return observer.readsClientAddress === true;
}
