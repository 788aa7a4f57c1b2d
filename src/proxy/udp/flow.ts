/**
 * A flow: one client address:port of a UDP listener and its own upstream socket, connected to
 * the target the backend's balancer picked. Datagrams keep their boundaries: one read from the
 * client is one sent to the target (behind a PROXY v2 header where the backend sends one), one
 * read from the target is one sent to the client through the listener's socket.
 *
 * States (`state`, as observers see a session's): `preface` while a QUIC Initial is read (sni
 * mode; no upstream socket yet, the Initials held), `open` once the upstream socket exists,
 * `closed`. A flow holds at most DEFAULTS.udp.pendingDatagrams datagrams while it cannot send;
 * more are dropped and counted. It ends after its listener's idle timeout, after `responses`
 * replies for each datagram its client sent, when its target answers ICMP port unreachable,
 * or when told to (target down, drain).
 *
 * The flow owns its upstream socket and its place on the target (acquire / release) and gives
 * both back in `close`, the one place it ends. The listener's socket is the listener's.
 */
import type { udp } from "bun";
import type { Backend, TargetState } from "../../backend/backend.ts";
import { NO_BACKEND } from "../../backend/backend.ts";
import { DEFAULTS } from "../../config/defaults.ts";
import { encodeProxyV2 } from "../../protocol/proxy-protocol.ts";
import type { QuicInitialReader, QuicInitialResult } from "../../protocol/quic.ts";
import { formatHostPort } from "../../util/address.ts";
import { errorCode, firstLine, udpErrorArgs } from "../../util/errors.ts";
import { event, heldBack } from "../../util/log.ts";
import type { CloseReason, FlowDirectionView, FlowView, SessionState } from "../handle.ts";
import type { FlowOwner } from "./context.ts";

/** An upstream socket and the flow it belongs to (set right after Bun makes it, before any callback). */
type Upstream = udp.ConnectedSocket<"buffer"> & { flow?: Flow };

/** One direction's counts. */
class Direction implements FlowDirectionView {
  bytes = 0;
  datagrams = 0;
  /** Bytes held (pending) in this direction now. */
  queued = 0;
}

export class Flow implements FlowView {
  readonly protocol = "udp";
  state: SessionState = "open";
  backend: Backend;
  target: TargetState | null = null;
  targetKey = "-";
  sni = "";
  readonly up = new Direction();
  readonly down = new Direction();
  reason: CloseReason | null = null;
  detail = "";
  readonly openedAt = Date.now();
  /** Sweeps of the listener's clock without a datagram either way (a datagram zeroes it). */
  idle = 0;
  /** The clock (performance.now) at the first sweep after the last datagram. */
  private idleFrom = 0;
  /** Counted in the listener's per-address flows (max_flows_per_ip): give it back on close. */
  counted = false;
  /** Datagrams read before the upstream socket could take them (QUIC Initials), in order. */
  private pending: Buffer[] | null = null;
  private upstream: Upstream | null = null;
  /** The PROXY v2 header sent in front of each datagram; null = none. */
  private header: Uint8Array | null = null;

  constructor(
    readonly listener: FlowOwner,
    readonly clientHost: string,
    readonly clientPort: number,
    /** sni mode: reads the client's Initials until the hello is whole; null = route at once. */
    private reader: QuicInitialReader | null,
  ) {
    this.backend = listener.options.route.fallback ?? NO_BACKEND;
    if (reader !== null) this.state = "preface";
  }

  clientAddress(): string {
    return formatHostPort(this.clientHost, this.clientPort);
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /**
   * The first datagram of a new client: routes (or, in sni mode, reads it as an Initial the
   * listener already pushed into the reader, with `result`) and sends it.
   */
  start(datagram: Buffer, result: QuicInitialResult | null): void {
    this.count(datagram);
    if (result === null) {
      this.connect();
      if (!this.closed) this.send(datagram);
      return;
    }
    this.hold(datagram);
    this.read(result);
  }

  /** A datagram from the client. */
  received(datagram: Buffer): void {
    this.count(datagram);
    if (this.state === "open") return this.send(datagram);
    if (this.closed) return this.listener.drop("send_failed");
    if (!this.hold(datagram)) return;
    // a Uint8Array view: the reader must not change the bytes it is given (see asBytes in udp-listener.ts)
    this.read(this.reader!.push(new Uint8Array(datagram.buffer, datagram.byteOffset, datagram.length)));
  }

  private count(datagram: Buffer): void {
    this.up.datagrams++;
    this.up.bytes += datagram.length;
    this.idle = 0;
  }

  /** Keeps a datagram until the flow can send; false (dropped, counted) past the bound. */
  private hold(datagram: Buffer): boolean {
    const pending = (this.pending ??= []);
    if (pending.length >= DEFAULTS.udp.pendingDatagrams || this.up.queued + datagram.length > DEFAULTS.udp.pendingBytes) {
      this.listener.drop("pending_full");
      return false;
    }
    pending.push(datagram);
    this.up.queued += datagram.length;
    return true;
  }

  /** The QUIC reader's verdict after an Initial: wait, route, or end the flow. */
  private read(result: QuicInitialResult): void {
    if (result.state === "need-more") return;
    this.reader = null;
    if (result.state === "error") {
      this.listener.drop("quic_error", this.pending?.length ?? 1);
      return this.close("tls_error", result.reason);
    }
    this.sni = result.serverName ?? "";
    const backend = this.listener.options.route.match({ serverName: result.serverName, alpn: result.alpn });
    if (backend === null) {
      this.listener.drop("no_route", this.pending?.length ?? 1);
      this.listener.noRoute(this, result.alpn);
      return this.close("no_route", `no route for server name ${result.serverName === null ? "(none)" : JSON.stringify(result.serverName)}`);
    }
    this.backend = backend;
    this.state = "open";
    this.connect();
    if (this.closed) return;
    const pending = this.pending ?? [];
    this.pending = null;
    this.up.queued = 0;
    for (const datagram of pending) this.send(datagram);
  }

  /** Picks a target and opens the upstream socket, connected to it; closes the flow when none can be had. */
  private connect(): void {
    const backend = this.backend;
    const target = backend.acquire(this, null);
    if (target === null) {
      this.listener.drop("no_target", this.pending?.length ?? 1);
      const held = backend.failureLog.allow();
      if (held >= 0) {
        const client = this.clientAddress();
        const message = `udp client ${client} → backend ${backend.name}: no target available${heldBack(held)}`;
        this.listener.router.log.warn(event(message, { client, backend: backend.name, reason: "no_target", suppressed: held }));
      }
      return this.close("no_target", "");
    }
    this.target = target;
    this.targetKey = target.key;
    const address = target.address;
    if (address.kind !== "tcp") return this.close("connect_failed", `${target.key}: not a host:port target`);
    const source = target.source ?? backend.source;
    try {
      const options = {
        hostname: source ?? (address.host.includes(":") ? "::" : "0.0.0.0"),
        port: 0,
        binaryType: "buffer" as const,
        connect: { hostname: address.host, port: address.port },
        socket: upstreamHandlers,
      };
      const made = Bun.peek(Bun.udpSocket(options as unknown as udp.ConnectSocketOptions<"buffer">));
      if (made instanceof Promise) {
        // Bun binds and connects synchronously on Linux; should it not, this flow waits for it.
        made.then(
          (socket) => this.opened(socket as Upstream),
          (error: unknown) => this.failed(error),
        );
        this.state = this.state === "open" ? "connecting" : this.state;
        return;
      }
      this.opened(made as Upstream);
    } catch (error) {
      this.failed(error);
    }
  }

  private opened(socket: Upstream): void {
    if (this.closed) return void socket.close();
    socket.flow = this;
    this.upstream = socket;
    this.target!.sessions++;
    if (this.backend.sendProxy === "v2") {
      const local = this.listener.address;
      const destination = local.kind === "tcp" ? { host: local.host, port: local.port } : null;
      this.header = encodeProxyV2({ host: this.clientHost, port: this.clientPort }, destination, undefined, "dgram");
    }
    if (this.state === "connecting") {
      this.state = "open";
      const pending = this.pending ?? [];
      this.pending = null;
      this.up.queued = 0;
      for (const datagram of pending) this.send(datagram);
    }
  }

  private failed(error: unknown): void {
    if (this.closed) return;
    if (this.target !== null) this.backend.connectFailed(this.target);
    this.close("connect_failed", `${this.targetKey}: ${errorCode(error) ?? firstLine(error)}`);
  }

  /** Sends one datagram to the target (behind the PROXY header when there is one). */
  private send(datagram: Buffer): void {
    const upstream = this.upstream;
    if (upstream === null) {
      if (this.state === "connecting") this.hold(datagram);
      else this.listener.drop("send_failed");
      return;
    }
    const header = this.header;
    let sent = false;
    try {
      sent = upstream.send(header === null ? datagram : Buffer.concat([header, datagram]));
    } catch {
      sent = false;
    }
    if (!sent) this.listener.drop("send_failed");
  }

  /** A datagram from the target: to the client, unchanged. */
  fromUpstream(datagram: Buffer): void {
    if (this.closed) return;
    this.down.datagrams++;
    this.down.bytes += datagram.length;
    this.idle = 0;
    this.listener.reply(this, datagram);
    // `responses` replies per datagram the client sent (nginx's proxy_responses): a client with
    // several queries in flight on one port gets every answer before the flow ends.
    const responses = this.listener.options.responses;
    if (responses > 0 && this.down.datagrams >= responses * this.up.datagrams) this.close("responses");
  }

  /** The upstream socket reported an error: ICMP port unreachable shows as ECONNREFUSED on a connected socket. */
  upstreamError(error: unknown): void {
    if (this.closed) return;
    const code = errorCode(error);
    if (code === "ECONNREFUSED") {
      if (this.target !== null) this.backend.connectFailed(this.target);
      return this.close("port_unreachable", `${this.targetKey}: port unreachable`);
    }
    this.close("upstream_reset", `${this.targetKey}: ${code ?? firstLine(error)}`);
  }

  /**
   * One sweep of the listener's clock (`now` Date.now(), `clock` performance.now()): idle and
   * hello timeouts. The first sweep after the last datagram notes the clock; the flow ends once
   * the clock is `idleTimeout` ms past that note (never early: see proxy/timers.ts).
   */
  tick(now: number, clock: number, idleTimeout: number): void {
    if (this.state === "preface" && now - this.openedAt >= this.listener.options.helloTimeout) {
      this.listener.drop("quic_error", this.pending?.length ?? 0);
      return this.close("hello_timeout", `no whole QUIC ClientHello within ${this.listener.options.helloTimeout} ms`);
    }
    if (++this.idle === 1) this.idleFrom = clock;
    else if (idleTimeout > 0 && clock - this.idleFrom >= idleTimeout) this.close("idle_timeout");
  }

  /**
   * Ends the flow once: gives its target's place back, closes its upstream socket, and tells its
   * listener and the observers. A flow that expected replies (`responses`) and got none in its
   * idle timeout counts as a failed connect on its target (passive health: a lost reply).
   */
  close(reason: CloseReason, detail = ""): void {
    if (this.closed) return;
    this.state = "closed";
    this.reason = reason;
    this.detail = detail;
    const target = this.target;
    if (target !== null) {
      if (reason === "idle_timeout" && this.listener.options.responses > 0 && this.down.datagrams === 0 && this.up.datagrams > 0) {
        this.backend.connectFailed(target);
        this.detail = `${target.key}: no reply`;
      }
      this.target = null;
      this.backend.release(target);
    }
    if (this.pending !== null) {
      this.pending = null;
      this.up.queued = 0;
    }
    const upstream = this.upstream;
    this.upstream = null;
    if (upstream !== null) {
      upstream.flow = undefined;
      upstream.close();
    }
    this.listener.flowEnded(this);
    for (const observer of this.listener.router.observers) observer.flowClosed?.(this);
  }
}

/** Handlers of upstream sockets: defined once, the flow is the socket's `flow`. */
const upstreamHandlers = {
  data(socket: Upstream, datagram: Buffer) {
    socket.flow?.fromUpstream(datagram);
  },
  drain() {},
  error(this: unknown, first: unknown, second?: unknown) {
    const [socket, error] = udpErrorArgs<Upstream>(this, first, second);
    socket?.flow?.upstreamError(error);
  },
};
