/**
 * The router's UDP listeners as one group: a reload binds the new ones first (`prepare`, so a
 * failed bind changes nothing), then configures the kept ones and closes the removed ones
 * (`commit`); kept listeners keep their socket and their flows, and flows keep their targets.
 * One interval sweep runs the flows' idle and hello timeouts. On stop the group drains: new
 * clients are dropped while open flows go on (the listening sockets stay open, since replies
 * go out through them), until `stop()` closes what is left.
 */
import type { Backend, TargetState } from "../../backend/backend.ts";
import type { Config, ListenerConfig } from "../../config/types.ts";
import { formatAddress, formatHostPort } from "../../util/address.ts";
import { CidrSet } from "../../util/cidr.ts";
import type { CloseReason } from "../handle.ts";
import { DefaultRoute, ServerNameRoute } from "../route.ts";
import type { UdpListenerOptions, UdpRouterContext } from "./context.ts";
import { UdpListener, type UdpListenerGroup } from "./udp-listener.ts";

/** What `prepare` bound and decided; `commit` or `abort` it. */
export interface UdpPlan {
  /** The UDP listeners of the new config, in order, and the listener each is (new or kept). */
  readonly configs: readonly ListenerConfig[];
  readonly next: readonly UdpListener[];
  readonly opened: readonly UdpListener[];
}

const MIN_TICK = 10;
const MAX_TICK = 1000;

export class UdpListeners implements UdpListenerGroup {
  listeners: UdpListener[] = [];
  draining = false;
  flowCount = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly router: UdpRouterContext) {}

  /** Binds the UDP listeners new in `config` (matched by listen address). Throws ListenError after closing what it bound. */
  prepare(config: Config): UdpPlan {
    const current = new Map(this.listeners.map((listener) => [key(listener.options), listener]));
    const configs = config.listeners.filter((listener) => listener.protocol === "udp");
    const next: UdpListener[] = [];
    const opened: UdpListener[] = [];
    const placeholder = new DefaultRoute(null);
    try {
      for (const listener of configs) {
        const address = listener.listen;
        if (address.kind !== "tcp") throw new Error(`${listener.name}: a UDP listener needs host:port`);
        const existing = current.get(formatHostPort(address.host, address.port));
        if (existing !== undefined && !(address.port === 0 && next.includes(existing))) {
          next.push(existing);
          continue;
        }
        // The route is a placeholder until commit: no datagram is read before.
        const made = new UdpListener(this, { ...udpListenerOptions(listener, new Map()), route: placeholder });
        made.open();
        opened.push(made);
        next.push(made);
      }
    } catch (error) {
      for (const listener of opened) listener.close();
      throw error;
    }
    return { configs, next, opened };
  }

  /** Makes a prepared plan live: kept and new listeners get their options; removed ones close (their flows with it). */
  commit(plan: UdpPlan, backends: ReadonlyMap<string, Backend>): { opened: string[]; closed: string[]; kept: string[] } {
    for (const [index, listener] of plan.next.entries()) listener.configure(udpListenerOptions(plan.configs[index]!, backends));
    const name = (listener: UdpListener) => `udp ${formatAddress(listener.address)}`;
    const closed = this.listeners.filter((listener) => !plan.next.includes(listener));
    const closedNames = closed.map(name); // the bound addresses, read before the sockets close
    for (const listener of closed) listener.close("listener_closed");
    const kept = plan.next.filter((listener) => !plan.opened.includes(listener));
    this.listeners = [...plan.next];
    this.startSweep();
    return { opened: plan.opened.map(name), closed: closedNames, kept: kept.map(name) };
  }

  /** Undoes `prepare` (another listener failed to bind): closes what it bound. */
  abort(plan: UdpPlan): void {
    for (const listener of plan.opened) listener.close();
  }

  /** Closes the flows on `target` with `reason`; returns how many. */
  closeOn(target: TargetState, reason: CloseReason, why: string): number {
    let closed = 0;
    for (const listener of this.listeners) {
      for (const flow of [...listener.flows]) {
        if (flow.target !== target) continue;
        flow.close(reason, why);
        closed++;
      }
    }
    return closed;
  }

  /** New clients are dropped from now on; open flows go on. */
  drain(): void {
    this.draining = true;
  }

  flowEnded(): void {
    if (this.flowCount === 0 && this.draining) this.router.flowsEnded();
  }

  /** Ends every flow (reason `drained`) and closes every socket. Final. */
  stop(): void {
    this.draining = true;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const listener of this.listeners) listener.close("drained");
    this.listeners = [];
  }

  /** (Re)starts the flow clock at a tenth of the shortest timeout in use (10 ms to 1 s). */
  private startSweep(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.listeners.length === 0) return;
    let shortest = Number.POSITIVE_INFINITY;
    for (const { options } of this.listeners) {
      shortest = Math.min(shortest, options.idleTimeout > 0 ? options.idleTimeout : Number.POSITIVE_INFINITY);
      if (options.quic) shortest = Math.min(shortest, options.helloTimeout);
    }
    if (shortest === Number.POSITIVE_INFINITY) return;
    const tick = Math.min(MAX_TICK, Math.max(MIN_TICK, Math.floor(shortest / 10)));
    this.timer = setInterval(sweepFlows, tick, this);
    this.timer.unref();
  }

  sweep(): void {
    const now = Date.now();
    const clock = performance.now();
    for (const listener of this.listeners) listener.sweep(now, clock);
  }
}

function sweepFlows(group: UdpListeners): void {
  group.sweep();
}

function key(options: UdpListenerOptions): string {
  return formatHostPort(options.host, options.port);
}

/** A UDP listener's runtime options from its (validated) config. */
export function udpListenerOptions(config: ListenerConfig, backends: ReadonlyMap<string, Backend>): UdpListenerOptions {
  const backend = config.backend === null ? null : (backends.get(config.backend) ?? null);
  const sets = (list: string[]) => (list.length > 0 ? new CidrSet(list) : null);
  const quic = config.mode === "sni";
  const route = quic ? ServerNameRoute.of(config.routes, backends, backend, NO_REFUSAL) : new DefaultRoute(backend);
  const address = config.listen.kind === "tcp" ? config.listen : { host: "", port: 0 };
  const udp = config.udp ?? { maxFlows: 0, maxFlowsPerIp: 0, responses: 0 };
  return {
    name: config.name,
    host: address.host,
    port: address.port,
    route,
    quic,
    idleTimeout: config.idleTimeout,
    helloTimeout: config.helloTimeout,
    maxFlows: udp.maxFlows,
    maxFlowsPerIp: udp.maxFlowsPerIp,
    responses: udp.responses,
    allow: sets(config.allow),
    deny: sets(config.deny),
  };
}

/** A QUIC client nothing matched gets no answer (the listener does not speak QUIC). */
const NO_REFUSAL = new Uint8Array(0);
