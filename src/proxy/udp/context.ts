/**
 * What a flow sees of its UDP listener, and what UDP listeners see of the router: interfaces
 * only, so src/proxy/udp/ imports one way (udp-listeners → udp-listener → flow).
 */
import type { Logger } from "../../util/log.ts";
import type { CidrSet } from "../../util/cidr.ts";
import type { DropReason, ListenerView, SessionObserver } from "../handle.ts";
import type { Route } from "../route.ts";

export interface UdpListenerOptions {
  /** Unique in a router; used in logs and metrics. */
  name: string;
  /** Where to bind: an IP (or a name Bun resolves) and a port (0: any). */
  host: string;
  port: number;
  /** A plain listener's backend, or (sni mode) the QUIC server-name table with its default. */
  route: Route;
  /** sni mode: a new flow is routed by its QUIC Initial's server name and ALPN. */
  quic: boolean;
  /** ms without a datagram either way that ends a flow; never 0. */
  idleTimeout: number;
  /** ms a flow may take to send a whole QUIC ClientHello (sni mode). */
  helloTimeout: number;
  /** Flows at once on the listener, and per client IP; 0 = no limit. */
  maxFlows: number;
  maxFlowsPerIp: number;
  /** Datagrams from upstream after which a flow ends; 0 = off. */
  responses: number;
  /** Source ACLs on the client address; null = no rule. */
  allow: CidrSet | null;
  deny: CidrSet | null;
}

/** What UDP listeners and their flows see of the router. */
export interface UdpRouterContext {
  readonly observers: readonly SessionObserver[];
  readonly log: Logger;
  /** Sessions (TCP) the open file limit leaves room for; 0 = unknown. Flows count against it too. */
  readonly capacity: number;
  /** TCP sessions open now. */
  readonly sessionCount: number;
  /** Bind with SO_REUSEPORT (workers share the port). */
  readonly reusePort: boolean;
  /** The last flow of a stopping router ended. */
  flowsEnded(): void;
}

/** What a flow sees of its listener. */
export interface FlowOwner extends ListenerView {
  /** Replaced as a whole by a reload; a flow reads it when it needs a value. */
  readonly options: UdpListenerOptions;
  readonly router: UdpRouterContext;
  /** Sends a datagram from the flow's target to its client (through the listener's socket). */
  reply(flow: { readonly clientHost: string; readonly clientPort: number }, datagram: Buffer): void;
  /** Counts `count` datagrams dropped (default 1). */
  drop(reason: DropReason, count?: number): void;
  /** Logs (rate-limited) a QUIC client whose server name no route takes. */
  noRoute(flow: { clientAddress(): string; readonly sni: string }, alpn: readonly string[]): void;
  /** A flow of this listener ended. */
  flowEnded(flow: object): void;
}
