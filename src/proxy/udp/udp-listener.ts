/**
 * A UDP listener: one bound UDP socket and the flows of its clients. A datagram from a known
 * client (address:port) goes to its flow; one from a new client passes the listener's checks
 * (draining, max_flows and the open file limit, allow/deny, max_flows_per_ip; in sni mode a
 * first QUIC Initial that decrypts) and starts a flow, or is dropped and counted by reason.
 * Nothing is queued here: a datagram is forwarded, held by its flow (a bounded few), or dropped.
 *
 * The listener owns its socket and its flows' index; each flow owns its upstream socket.
 * Handlers are defined once; the listener is its socket's `listener`.
 */
import type { udp } from "bun";
import type { Backend } from "../../backend/backend.ts";
import { QuicInitialReader } from "../../protocol/quic.ts";
import type { Address } from "../../util/address.ts";
import { formatHostPort } from "../../util/address.ts";
import { listenErrorText, udpErrorArgs } from "../../util/errors.ts";
import { event, heldBack, LogLimiter } from "../../util/log.ts";
import { Admission } from "../admission.ts";
import type { DropReason, UdpListenerView } from "../handle.ts";
import { ListenError } from "../listener.ts";
import type { FlowOwner, UdpListenerOptions, UdpRouterContext } from "./context.ts";
import { Flow } from "./flow.ts";
import { bindReusePort, closeDescriptor } from "./reuse-port.ts";

type ListenSocket = udp.Socket<"buffer"> & { listener?: UdpListener };

/** What the listener needs of the set of UDP listeners it belongs to. */
export interface UdpListenerGroup {
  readonly router: UdpRouterContext;
  readonly draining: boolean;
  /** Flows open now on every UDP listener. */
  flowCount: number;
  flowEnded(): void;
}

export const DROP_REASONS: readonly DropReason[] = [
  "denied",
  "max_flows",
  "max_flows_per_ip",
  "draining",
  "no_target",
  "no_route",
  "quic_error",
  "pending_full",
  "send_failed",
];

export class UdpListener implements FlowOwner, UdpListenerView {
  readonly protocol = "udp";
  /** Flows open now; started since start (ListenerView's names). */
  active = 0;
  accepted = 0;
  datagramsUp = 0;
  datagramsDown = 0;
  bytesUp = 0;
  bytesDown = 0;
  readonly dropped = Object.fromEntries(DROP_REASONS.map((reason) => [reason, 0])) as Record<DropReason, number>;
  /** Flows by client address, then port. */
  private readonly clients = new Map<string, Map<number, Flow>>();
  readonly admission: Admission;
  private socket: ListenSocket | null = null;
  private readonly limited = new LogLimiter();
  private readonly routeLog = new LogLimiter();
  private readonly quicLog = new LogLimiter();

  constructor(
    readonly group: UdpListenerGroup,
    /** Replaced as a whole by a reload (see `configure`). */
    public options: UdpListenerOptions,
  ) {
    this.admission = new Admission(admissionRules(options));
  }

  get router(): UdpRouterContext {
    return this.group.router;
  }

  get name(): string {
    return this.options.name;
  }

  get backend(): Backend | null {
    return this.options.route.fallback;
  }

  /** Datagrams dropped at a limit (max_flows, max_flows_per_ip, draining): ListenerView's `refused`. */
  get refused(): number {
    return this.dropped.max_flows + this.dropped.max_flows_per_ip + this.dropped.draining;
  }

  /** Datagrams dropped by allow/deny: ListenerView's `denied`. */
  get denied(): number {
    return this.dropped.denied;
  }

  get flows(): Iterable<Flow> {
    return this.eachFlow();
  }

  private *eachFlow(): Generator<Flow> {
    for (const byPort of this.clients.values()) yield* byPort.values();
  }

  /** The bound address, with the real port where port 0 was asked for. */
  get address(): Address {
    return { kind: "tcp", host: this.options.host, port: this.socket?.port ?? this.options.port };
  }

  /** A reload's options for this listener (the bound address stays); its flows go on as they are. */
  configure(options: UdpListenerOptions): void {
    this.options = { ...options, host: this.options.host, port: this.options.port };
    this.admission.rules = admissionRules(options);
  }

  /**
   * Binds the address, always with SO_REUSEPORT: workers share the port, and an upgrade's new
   * process binds it next to the old one. Throws ListenError with a one-line reason.
   */
  open(): void {
    const { host, port } = this.options;
    const where = `udp ${formatHostPort(host, port)}`;
    let fd = -1;
    try {
      const common = { binaryType: "buffer" as const, socket: listenerHandlers };
      fd = bindReusePort(host, port);
      // `fd` is missing from Bun's types for udpSocket; it adopts the socket (BUN-NOTES.md).
      const made: unknown = Bun.peek((Bun.udpSocket as unknown as (options: unknown) => Promise<ListenSocket>)({ ...common, fd }));
      if (made instanceof Promise) throw new Error("the bind did not complete at once");
      this.socket = made as ListenSocket;
      this.socket.listener = this;
    } catch (error) {
      if (fd >= 0 && this.socket === null) closeDescriptor(fd);
      throw new ListenError(`cannot listen on ${where}: ${listenErrorText(error)}`);
    }
  }

  /** Closes the socket and ends every flow with `reason` (their replies could not reach the clients any more). */
  close(reason: "listener_closed" | "drained" = "listener_closed"): void {
    for (const flow of [...this.eachFlow()]) flow.close(reason);
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.listener = undefined;
      socket.close();
    }
  }

  /** A datagram from a client. Never throws. */
  received(datagram: Buffer, port: number, host: string): void {
    this.datagramsUp++;
    this.bytesUp += datagram.length;
    const flow = this.clients.get(host)?.get(port);
    if (flow !== undefined) return flow.received(datagram);
    this.newClient(datagram, port, host);
  }

  private newClient(datagram: Buffer, port: number, host: string): void {
    const group = this.group;
    if (group.draining) return this.drop("draining");
    const { maxFlows, quic } = this.options;
    const router = this.router;
    if (maxFlows > 0 && this.active >= maxFlows) return this.limit("max_flows", `max_flows ${maxFlows} reached`);
    if (router.capacity > 0 && router.sessionCount + group.flowCount >= router.capacity)
      return this.limit("max_flows", `the open file limit allows ${router.capacity} sessions and flows (raise it with ulimit -n)`);
    let counted = false;
    if (!this.admission.open) {
      const verdict = this.admission.check(host);
      if (verdict.denied !== null) {
        if (verdict.denied === "address not allowed") return this.drop("denied");
        return this.limit("max_flows_per_ip", `client ${host} is over max_flows_per_ip ${this.options.maxFlowsPerIp}`);
      }
      counted = verdict.counted;
    }
    let reader: QuicInitialReader | null = null;
    let result = null;
    if (quic) {
      // A first datagram that is no QUIC Initial (or does not decrypt) gets no flow and no socket.
      reader = new QuicInitialReader();
      result = reader.push(asBytes(datagram));
      if (result.state === "error") {
        if (counted) this.admission.release(host);
        this.drop("quic_error");
        const held = this.quicLog.allow();
        if (held >= 0)
          router.log.debug(
            event(`listener ${this.name}: udp client ${formatHostPort(host, port)}: not a QUIC Initial: ${result.reason}${heldBack(held)}`, {
              listener: this.name,
              reason: "quic_error",
              detail: result.reason,
              suppressed: held,
            }),
          );
        return;
      }
    }
    const flow = new Flow(this, host, port, reader);
    flow.counted = counted;
    let byPort = this.clients.get(host);
    if (byPort === undefined) this.clients.set(host, (byPort = new Map()));
    byPort.set(port, flow);
    this.active++;
    this.accepted++;
    group.flowCount++;
    flow.start(datagram, result);
  }

  /** A datagram from a flow's target, to its client. */
  reply(flow: { readonly clientHost: string; readonly clientPort: number }, datagram: Buffer): void {
    this.datagramsDown++;
    this.bytesDown += datagram.length;
    const socket = this.socket;
    let sent = false;
    if (socket !== null) {
      try {
        sent = socket.send(datagram, flow.clientPort, flow.clientHost);
      } catch {
        sent = false;
      }
    }
    if (!sent) this.drop("send_failed");
  }

  drop(reason: DropReason, count = 1): void {
    this.dropped[reason] += count;
  }

  /** Drops a datagram at a limit, with one warn line per second at most. */
  private limit(reason: "max_flows" | "max_flows_per_ip", why: string): void {
    this.drop(reason);
    const held = this.limited.allow();
    if (held >= 0)
      this.router.log.warn(
        event(`listener ${this.name}: ${why}, dropping datagrams of new clients${heldBack(held)}`, {
          listener: this.name,
          reason,
          detail: why,
          suppressed: held,
        }),
      );
  }

  noRoute(flow: { clientAddress(): string; readonly sni: string }, alpn: readonly string[]): void {
    const held = this.routeLog.allow();
    if (held < 0) return;
    const name = flow.sni === "" ? "(none)" : JSON.stringify(flow.sni);
    const message = `listener ${this.name}: udp client ${flow.clientAddress()}: no route for QUIC server name ${name} (alpn ${alpn.join(",") || "none"}) and no default${heldBack(held)}`;
    this.router.log.warn(event(message, { listener: this.name, client: flow.clientAddress(), sni: flow.sni, reason: "no_route", suppressed: held }));
  }

  flowEnded(ended: object): void {
    const flow = ended as Flow;
    const byPort = this.clients.get(flow.clientHost);
    if (byPort?.get(flow.clientPort) === flow) {
      byPort.delete(flow.clientPort);
      if (byPort.size === 0) this.clients.delete(flow.clientHost);
    }
    if (flow.counted) this.admission.release(flow.clientHost);
    this.active--;
    this.group.flowCount--;
    this.group.flowEnded();
  }

  /** One sweep of the group's clock. */
  sweep(now: number, clock: number): void {
    if (this.active === 0) return;
    for (const flow of [...this.eachFlow()]) flow.tick(now, clock, this.options.idleTimeout);
  }
}

/**
 * The datagram as a plain Uint8Array over the same memory, for the QUIC reader: it unmasks a
 * header in a `slice()`, which copies a Uint8Array but is a view of a Buffer, so a Buffer given
 * to it would be changed before it is forwarded (src/protocol/quic.ts, Bun 1.4.5).
 */
function asBytes(datagram: Buffer): Uint8Array {
  return new Uint8Array(datagram.buffer, datagram.byteOffset, datagram.length);
}

function admissionRules(options: UdpListenerOptions) {
  return { allow: options.allow, deny: options.deny, maxConnectionsPerIp: options.maxFlowsPerIp, connectionRatePerIp: 0 };
}

/** Handlers of listener sockets: defined once, the listener is the socket's `listener`. */
const listenerHandlers = {
  data(socket: ListenSocket, datagram: Buffer, port: number, address: string) {
    const listener = socket.listener;
    if (listener === undefined) return;
    try {
      listener.received(datagram, port, address);
    } catch (error) {
      // Not expected: a datagram must never take the process down.
      listener.router.log.error(`listener ${listener.name}: datagram from ${formatHostPort(address, port)}: ${(error as Error).stack ?? String(error)}`);
    }
  },
  drain() {},
  error(this: unknown, first: unknown, second?: unknown) {
    const [socket, error] = udpErrorArgs<ListenSocket>(this, first, second);
    const listener = socket?.listener;
    listener?.router.log.debug(`listener ${listener.name}: udp socket: ${(error as Error | undefined)?.message ?? String(error)}`);
  },
};
