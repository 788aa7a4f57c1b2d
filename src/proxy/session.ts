/**
 * A session is one accepted client connection plus the upstream connection dialled for it.
 *
 * The session owns both sockets: it is the only code that closes them, and it closes both. It
 * is a small state machine with one `state` (see `SessionState`): the stages of the accept path
 * (admission, the preface steps, the route, the connector) move it through its methods, and no
 * other file writes its fields. Bytes move through two pipes (`up`: client → upstream, `down`:
 * upstream → client). The session ends when both pipes are done (each FIN passed on, or its
 * peer gone), or at once on a reset, a write error, an idle timeout, a failed connect or a
 * drain deadline.
 *
 * Socket handlers are module-level functions (listener.ts, connector.ts); per-session state
 * lives in `socket.data`.
 */
import type { Socket } from "bun";
import { NO_BACKEND, type Backend, type TargetState } from "../backend/backend.ts";
import { formatHostPort } from "../util/address.ts";
import { DEBUG, event, heldBack } from "../util/log.ts";
import { encodeProxyV1, encodeProxyV2 } from "../protocol/proxy-protocol.ts";
import { connectErrorText } from "../util/errors.ts";
import { type Attempt, Connector, type UpstreamOwner } from "./connector.ts";
import type { ClientSocket, ListenerContext, RouterContext } from "./context.ts";
import type { CloseReason, SessionObserver, SessionState } from "./handle.ts";
import { type AnySocket, Pipe, type PipeOwner } from "./pipe.ts";
import { backendLimits, limiters, type RateLimits } from "./rate.ts";
import { Preface, type PrefaceContext } from "./preface/preface.ts";
import type { ClientCertificate, RouteInfo } from "./route.ts";
import { proxySsl } from "./certificates.ts";
import type { SessionRecord } from "./handover-record.ts";

export class Session implements PipeOwner, UpstreamOwner, PrefaceContext {
  state: SessionState;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly router: RouterContext;
  /** Sweeps of the session clock since bytes last moved (pipes zero it). */
  idleTicks = 0;
  /** The clock (performance.now) at the first sweep after bytes last moved. */
  private idleFrom = 0;
  /** The clock at the first sweep that saw bytes queued and none of them taken since; -1 = none. */
  private stallFrom = -1;
  /** Bytes delivered (read less queued) at the last sweep. */
  private delivered = 0;
  /** Counted in the router's sessions in handshake or preface. */
  private prefacing = false;
  /** The queues taken out by freeze (up, down), given back by thaw. */
  private frozen: [Uint8Array, Uint8Array] | null = null;
  /** What the preface learned, for the route. */
  readonly info: RouteInfo = { serverName: null, alpn: NO_ALPN };
  private upstreamSocket: Socket<Attempt> | null = null;
  private connector: Connector | null = null;
  private preface: Preface | null = null;
  private routedTo: Backend;
  private closeReason: CloseReason | null = null;
  private closeDetail = "";
  /** The client's address; null until read (see clientHost). */
  private host: string | null = null;
  /** The client's port; -1 until read (see clientPort). */
  private port = -1;
  /** The address the client dialled, as a PROXY header gave it (relayed by send_proxy); null = the listener's. */
  private destination: { host: string; port: number } | null = null;
  /** Counted in the listener's sessions per client address (released at close). */
  private countedIp = false;
  /** The last pipe left its FIN to close(2) (see closesAfter): close that socket, do not end() it. */
  private finByClose = false;
  /** The router's list of open sessions (session-list.ts writes these). */
  listPrev: Session | null = null;
  listNext: Session | null = null;

  constructor(
    readonly listener: ListenerContext,
    readonly client: ClientSocket,
    /** Date.now() at accept (an older process's, for a session handed over). */
    readonly openedAt = Date.now(),
  ) {
    this.router = listener.router;
    this.state = listener.options.tls ? "handshake" : "preface";
    if (this.state === "handshake") this.countPrefacing(true);
    this.routedTo = defaultBackend(listener);
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

  get closed(): boolean {
    return this.state === "closed";
  }

  get limits() {
    return this.router.limits;
  }

  get upstream(): Socket<Attempt> | null {
    return this.upstreamSocket;
  }

  get backend(): Backend {
    return this.routedTo;
  }

  get target(): TargetState | null {
    return this.connector?.target ?? null;
  }

  get targetKey(): string {
    return this.connector?.targetKey ?? "-";
  }

  get sni(): string {
    return this.info.serverName ?? "";
  }

  get reason(): CloseReason | null {
    return this.closeReason;
  }

  get detail(): string {
    return this.closeDetail;
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

  clientAddress(): string {
    return this.clientHost === "" ? "unix" : formatHostPort(this.clientHost, this.clientPort);
  }

  // ── the accept path ───────────────────────────────────────────────────────────────────────

  /** A TLS listener's client finished its handshake (`serverName` from its SNI; its verified certificate where asked for). */
  handshakeDone(serverName: string | null, clientCertificate: ClientCertificate | null = null): void {
    if (this.state !== "handshake") return;
    this.info.serverName = serverName; // for the logs, as in SNI mode
    this.info.clientCertificate = clientCertificate;
    this.state = "preface";
    this.start();
  }

  /** Admission (or the PROXY source check), then the preface steps, or straight to the route. */
  start(): void {
    const { acceptProxy, helloTimeout } = this.listener.options;
    if (acceptProxy !== null) {
      if (!acceptProxy.has(this.clientHost)) return this.fail("denied", "PROXY header expected from an untrusted address");
    } else if (!this.admit()) return;
    const steps = this.listener.prefaceSteps();
    if (steps.length === 0) return this.route();
    this.countPrefacing(true);
    this.preface = new Preface(steps, this, helloTimeout);
  }

  /** Bytes from the client: to the preface while it is read, else to the upstream. */
  received(chunk: Uint8Array): void {
    if (this.preface === null) this.up.push(chunk);
    else this.preface.feed(chunk);
  }

  /**
   * Source checks, once the client address is known (after the PROXY header where there is
   * one). Closes the session and returns false when it is turned away.
   */
  admit(): boolean {
    const admission = this.listener.admission;
    if (admission.open) return true; // the address is not read (a getpeername(2) spared)
    const verdict = admission.check(this.clientHost);
    if (verdict.denied !== null) {
      this.fail("denied", verdict.denied);
      return false;
    }
    this.countedIp = verdict.counted;
    return true;
  }

  keep(bytes: Uint8Array): void {
    this.up.push(bytes);
  }

  setClientAddress(host: string, port: number, destination: { host: string; port: number } | null): void {
    this.host = host;
    this.port = port;
    this.destination = destination;
  }

  /** Counts the session in (or out of) the router's sessions waiting for their client's first bytes. */
  private countPrefacing(on: boolean): void {
    if (on === this.prefacing) return;
    this.prefacing = on;
    this.router.prefacing += on ? 1 : -1;
  }

  /**
   * One sweep of the router's clock (timers.ts; `now` is Date.now(), `clock` performance.now()):
   * closes the session when one of its listener's timers has passed. Every chunk read zeroes
   * the idle sweeps, and the first sweep after that notes the clock; a stall is timed only
   * while bytes are queued and their reader takes none of them.
   */
  tick(now: number, clock: number): void {
    const o = this.listener.options; // timeouts in ms, 0 = off
    if (++this.idleTicks === 1) this.idleFrom = clock;
    const idle = clock - this.idleFrom;
    if (o.idleTimeout > 0 && idle >= o.idleTimeout) return this.close("idle_timeout");
    const max = o.maxSessionDuration;
    if (max > 0 && now - this.openedAt >= max) return this.close("max_duration", `open for ${max} ms`);
    const state = this.state;
    if (state === "handshake") {
      // Only a TLS listener's sessions have a handshake.
      const hello = o.helloTimeout;
      if (hello > 0 && now - this.openedAt >= hello) this.fail("hello_timeout", `no complete TLS handshake within ${hello} ms`);
      return;
    }
    if (state === "connecting") return this.connector!.tick(o.connectTimeout, clock);
    if (state !== "open" && state !== "closing") return;
    if (state === "closing" && o.halfClosedTimeout > 0 && idle >= o.halfClosedTimeout) return this.close("half_closed_timeout");
    const queued = this.up.queued + this.down.queued;
    if (queued === 0) {
      this.stallFrom = -1;
      return;
    }
    const delivered = this.up.bytes + this.down.bytes - queued;
    if (delivered !== this.delivered || this.stallFrom < 0) {
      this.delivered = delivered;
      this.stallFrom = clock;
    } else if (o.writeTimeout > 0 && clock - this.stallFrom >= o.writeTimeout) {
      const side = this.down.queued > 0 ? "client" : "upstream";
      this.close("write_timeout", `the ${side} took none of ${queued} queued bytes`);
    }
  }

  /** The client was turned away before any upstream was dialled: one warn line (per second), closed. */
  fail(reason: CloseReason, detail: string): void {
    if (this.closed) return;
    const listener = this.listener;
    listener.countDenied();
    const held = listener.denials.allow();
    if (held >= 0) {
      const client = this.clientAddress();
      const message = `listener ${listener.name}: client ${client}: ${detail}, closed${heldBack(held)}`;
      this.router.log.warn(event(message, { listener: listener.name, client, reason, detail, suppressed: held }));
    }
    this.close(reason, detail);
  }

  /** The preface is read: the route picks the backend, the connector dials it. */
  route(): void {
    this.preface = null;
    this.countPrefacing(false);
    const route = this.listener.options.route;
    const backend = route.match(this.info);
    if (backend === null) {
      if (route.refusal !== null) this.client.write(route.refusal);
      const name = this.info.serverName;
      return this.fail("no_route", `no route for server name ${name === null ? "(none)" : JSON.stringify(name)}`);
    }
    this.routedTo = backend;
    const rates = this.listener.options.rates;
    const backendRates = backendLimits(backend);
    if (rates !== null || backendRates !== null) this.limit(rates, backendRates);
    this.state = "connecting";
    this.connector = new Connector(this, backend);
    this.connector.dial();
  }

  /** Bandwidth limits of the listener and the backend, on both pipes (rate.ts); given back in Pipe.abandon. */
  private limit(listener: RateLimits | null, backend: RateLimits | null): void {
    const [up, down] = limiters(listener, backend, () => this.clientHost);
    this.up.limiter = up;
    this.down.limiter = down;
  }

  // ── a session handed to a new process (handover.ts) ───────────────────────────────────────

  /**
   * True when this session can move to another process: both sockets open and plain (a TLS
   * socket's state stays in this process), no FIN seen yet, no preface pending.
   */
  get movable(): boolean {
    return (
      this.state === "open" &&
      this.upstreamSocket !== null &&
      this.listener.options.tls === null &&
      this.routedTo.tls === null &&
      !this.up.ended &&
      !this.down.ended &&
      fdOf(this.client) >= 0 &&
      fdOf(this.upstreamSocket) >= 0
    );
  }

  /** Stops reading both sockets (nothing more reaches the pipes) and says what the new process needs. */
  freeze(): SessionRecord {
    this.client.pause();
    this.upstreamSocket!.pause();
    const up = this.up.freeze();
    const down = this.down.freeze();
    this.frozen = [up, down];
    return {
      listener: this.listener.name,
      backend: this.routedTo.name,
      target: this.targetKey,
      client: fdOf(this.client),
      upstream: fdOf(this.upstreamSocket!),
      clientHost: this.clientHost,
      clientPort: this.clientPort,
      sni: this.sni,
      openedAt: this.openedAt,
      bytesUp: this.up.bytes,
      bytesDown: this.down.bytes,
      up: Buffer.from(up).toString("base64"),
      down: Buffer.from(down).toString("base64"),
    };
  }

  /** The new process did not take it: read on here. */
  thaw(): void {
    const [up, down] = this.frozen ?? [new Uint8Array(0), new Uint8Array(0)];
    this.frozen = null;
    if (this.closed) return;
    this.up.thaw(up);
    this.down.thaw(down);
    this.client.resume();
    this.upstreamSocket?.resume();
  }

  /**
   * The new process has both sockets: close this process's copies without a FIN or reset
   * (close(2) of one of two descriptors; never end(), shutdown() or terminate(), which would
   * reach the peer or the shared socket) and forget the session (reason handed_over).
   */
  handOff(): void {
    if (this.closed) return;
    const client = this.client;
    const upstream = this.upstreamSocket;
    client.data = undefined; // the close handlers below see no session
    this.upstreamSocket = null;
    this.state = "closed";
    this.closeReason = "handed_over";
    this.connector?.release();
    this.up.abandon();
    this.down.abandon();
    upstream?.close();
    client.close();
    if (this.countedIp) this.listener.admission.release(this.clientHost);
    this.listener.sessionEnded();
    this.router.sessionClosed(this);
  }

  /**
   * In the new process: a session handed over with its client socket adopted. The upstream
   * socket is adopted next (Connector.adopt); the queues are what the old process held.
   */
  static adopted(listener: ListenerContext, client: ClientSocket, record: SessionRecord, backend: Backend, target: TargetState | null): Session {
    const session = new Session(listener, client, record.openedAt);
    session.host = record.clientHost;
    session.port = record.clientPort;
    session.info.serverName = record.sni === "" ? null : record.sni;
    session.routedTo = backend;
    session.state = "connecting";
    // The new process's limits apply from now on (the queued bytes below go out at once).
    const rates = listener.options.rates;
    const backendRates = backendLimits(backend);
    if (rates !== null || backendRates !== null) session.limit(rates, backendRates);
    const down = Buffer.from(record.down, "base64");
    const up = Buffer.from(record.up, "base64");
    if (down.length > 0) session.down.push(down);
    if (up.length > 0) session.up.push(up);
    session.down.bytes = record.bytesDown;
    session.up.bytes = record.bytesUp;
    session.connector = Connector.adopted(session, backend, target, record.target, record.upstreamFd!);
    return session;
  }

  // ── the connector's calls (UpstreamOwner) ─────────────────────────────────────────────────

  connectTimeout(): number {
    return this.listener.options.connectTimeout;
  }

  waiting(): void {
    this.state = "queued";
  }

  connected(socket: Socket<Attempt>): void {
    this.state = "open";
    this.upstreamSocket = socket;
    this.up.to = socket;
    this.down.from = socket;
  }

  gaveUp(reason: CloseReason, detail: string): void {
    this.close(reason, detail);
  }

  /** The PROXY header for this session's target: the client's address and the one it dialled. */
  proxyHeader(version: "v1" | "v2"): Uint8Array {
    const source = this.clientHost === "" ? null : { host: this.clientHost, port: this.clientPort };
    const local = this.client.localAddress;
    const destination = this.destination ?? (local ? { host: local, port: this.client.localPort } : null);
    if (version === "v1") return encodeProxyV1(source, destination);
    return encodeProxyV2(source, destination, this.listener.options.tls ? proxySsl(this.client, this.info.clientCertificate) : undefined);
  }

  // ── the pipes' calls (PipeOwner) and the socket events ────────────────────────────────────

  /**
   * Asked by a pipe about to pass its FIN on: true when it is the last pipe and its `to` has
   * sent FIN already (nothing left to read there). The session closes next, and close(2) sends
   * the FIN after the queued bytes, so the pipe skips shutdown(2) and `to` is closed, not ended.
   * TLS sockets keep shutdown() and end() (close_notify).
   */
  closesAfter(pipe: Pipe): boolean {
    const other = pipe === this.up ? this.down : this.up;
    const tls = pipe === this.up ? this.routedTo.tls !== null : this.listener.options.tls !== null;
    return (this.finByClose = other.done && other.ended && !tls);
  }

  /** Called by a pipe once it has passed its FIN on. */
  pipeDone(): void {
    if (this.up.done && this.down.done) this.close(this.closeReason ?? "client_fin");
    else if (this.state === "open") this.state = "closing";
  }

  /** One side sent FIN. */
  ended(side: "client" | "upstream"): void {
    this.closeReason ??= side === "client" ? "client_fin" : "upstream_fin";
    if (this.state === "open") this.state = "closing";
    (side === "client" ? this.up : this.down).end();
  }

  /**
   * One side's socket closed. A reset closes the session at once. A clean close is a FIN for
   * the pipe reading that socket, and the pipe writing to it is done: the session closes as
   * soon as the other pipe has written what it holds.
   */
  socketClosed(side: "client" | "upstream", error: Error | undefined): void {
    if (this.closed) return;
    if (side === "client") this.client.data = undefined;
    else this.upstreamSocket = null;
    if (error !== undefined) return this.close(side === "client" ? "client_reset" : "upstream_reset", connectErrorText(error));
    this.closeReason ??= side === "client" ? "client_fin" : "upstream_fin";
    if (this.state === "open") this.state = "closing";
    const into = side === "client" ? this.down : this.up;
    const from = side === "client" ? this.up : this.down;
    this.router.counters.droppedBytes += into.abandon();
    into.to = null;
    from.from = null;
    from.end();
    if (from.done) this.close(this.closeReason);
  }

  writeFailed(socket: AnySocket): void {
    this.close("write_error", socket === this.client ? "client write failed" : "upstream write failed");
  }

  /** Ends the session: closes whichever sockets are still open. Idempotent. */
  close(reason: CloseReason, detail = ""): void {
    if (this.closed) return;
    // A TLS client mid-handshake is closed, not ended: end() waits to send close_notify.
    const plainClose = this.finByClose || this.state === "handshake";
    this.state = "closed";
    this.closeReason = reason;
    this.closeDetail = detail;
    this.preface?.stop();
    this.preface = null;
    this.countPrefacing(false);
    this.connector?.release();
    const dropped = this.up.abandon() + this.down.abandon();
    this.router.counters.droppedBytes += dropped;
    const upstream = this.upstreamSocket;
    if (upstream !== null) {
      this.upstreamSocket = null;
      if (this.finByClose) upstream.close();
      else upstream.end();
    }
    if (this.client.data === this) {
      if (plainClose) this.client.close();
      else this.client.end();
    }
    if (this.countedIp) this.listener.admission.release(this.clientHost);
    this.listener.sessionEnded();
    this.router.sessionClosed(this);
    if (this.router.log.level >= DEBUG) this.logClose();
  }

  private logClose(): void {
    const ms = Date.now() - this.openedAt;
    const detail = this.closeDetail ? ` (${this.closeDetail})` : "";
    this.router.log.debug(
      `session ${this.clientAddress()}${this.sni === "" ? "" : ` sni=${this.sni}`} → ${this.routedTo.name} ${this.targetKey}: ${this.up.bytes} B up, ${this.down.bytes} B down, ${ms} ms, ${this.closeReason}${detail}`,
    );
  }
}

/** A session's ALPN list until a ClientHello gives one (replaced, never changed in place). */
const NO_ALPN: readonly string[] = Object.freeze([]);

/** A plain listener's backend, or none yet (SNI mode: the route picks it). */
function defaultBackend(listener: ListenerContext): Backend {
  const route = listener.options.route;
  return route.readsClientHello ? NO_BACKEND : (route.fallback ?? NO_BACKEND);
}

/** A socket's descriptor (Bun has it, its types do not); -1 for a TLS socket or a closed one. */
function fdOf(socket: AnySocket): number {
  return (socket as unknown as { fd?: number }).fd ?? -1;
}

function readsClientAddress(observer: SessionObserver): boolean {
  return observer.readsClientAddress === true;
}
