/**
 * A listener is one bound address. It accepts client connections, applies its connection limit
 * and starts a session for each, dialled to its target.
 *
 * `Bun.listen` hands every new socket the listener as `socket.data`; `open` replaces it with
 * the socket's own session (or `undefined` for a connection it refuses).
 */
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import { formatAddress, type Address } from "../util/address.ts";
import { install, loadCertificates, type LoadedCertificates } from "./certificates.ts";
import type { ListenerTlsConfig } from "../config/types.ts";
import type { Backend } from "../backend/backend.ts";
import type { CidrSet } from "../util/cidr.ts";
import type { ServerNameRoute, ServerNameRoutes } from "../protocol/sni.ts";
import { event, heldBack, LogLimiter } from "../util/log.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { Router } from "./router.ts";
import { Session } from "./session.ts";

export class ListenError extends Error {}

export interface ListenerOptions {
  /** Unique in a router; used in logs and metrics. */
  name: string;
  address: Address;
  /** Where sessions go; in SNI mode, the default route (null: no default). */
  backend: Backend | null;
  /** Sessions open at once through this listener; 0 = no limit. */
  maxConnections: number;
  /** ms for one upstream connect attempt; 0 = no limit. */
  connectTimeout: number;
  /** ms without bytes either way after which a session is closed; 0 = off. */
  idleTimeout: number;
  /** SNI mode: routes by the TLS ClientHello's server name and ALPN; null = plain TCP. */
  routes?: ServerNameRoutes<SniRoute> | null;
  /** ms a client may take to send its PROXY header and ClientHello. Default 10 s. */
  helloTimeout?: number;
  /** Expect a PROXY protocol header (v1 or v2) from these sources; null = none. */
  acceptProxy?: CidrSet | null;
  /** Client addresses let in (null = all) and turned away (checked first). */
  allow?: CidrSet | null;
  deny?: CidrSet | null;
  /** Sessions open at once per client address; 0 = no limit. */
  maxConnectionsPerIp?: number;
  /** New sessions per second per client address; 0 = no limit. */
  connectionRatePerIp?: number;
  /** Terminate TLS with these certificates, chosen by SNI (certificates.ts); null = plain TCP. */
  tls?: ListenerTlsConfig | null;
}

export interface SniRoute extends ServerNameRoute {
  backend: Backend;
}

export class Listener {
  /** Sessions open through this listener now. */
  active = 0;
  /** Sessions accepted; connections refused at accept. */
  accepted = 0;
  refused = 0;
  /** Idle sweeps after which a session is closed (set by the router); 0 = never. */
  idleTicks = 0;
  /** Where new sessions go (the default route in SNI mode; null: none). */
  backend: Backend | null;
  /** Turned away by allow/deny, per-IP limits, or a bad preface. */
  denied = 0;
  /** Sessions open per client address (only with max_connections_per_ip). */
  private readonly perIp = new Map<string, number>();
  /** New sessions per client address in the current second (only with connection_rate_per_ip). */
  private readonly rate = new Map<string, number>();
  private rateSecond = 0;
  readonly denials = new LogLimiter();
  private server: TCPSocketListener<unknown> | UnixSocketListener<unknown> | null = null;
  private readonly refusals = new LogLimiter();
  /** A TLS listener's certificates as installed, and the SNI names installed on it so far. */
  private certificates: LoadedCertificates | null = null;
  private sniNames: ReadonlySet<string> = new Set();

  constructor(
    readonly router: Router,
    /** Replaced as a whole by a reload. */
    public options: ListenerOptions,
  ) {
    this.backend = options.backend;
  }

  /** Binds the address. Throws ListenError with a one-line reason. */
  open(): void {
    const address = this.options.address;
    let certificates: LoadedCertificates | null = null;
    try {
      certificates = this.options.tls ? loadCertificates(this.options.tls) : null;
    } catch (error) {
      throw new ListenError(`cannot listen on ${formatAddress(address)}: ${(error as Error).message}`);
    }
    // reusePort is missing from Bun's types for listen; it works on Linux (see workers/supervisor.ts).
    const tls = certificates === null ? {} : { tls: certificates.fallback };
    const common = {
      socket: certificates ? tlsClientHandlers : clientHandlers,
      data: this as unknown,
      allowHalfOpen: true,
      ...tls,
      ...(this.router.reusePort ? { reusePort: true } : {}),
    };
    try {
      this.server =
        address.kind === "unix" ? Bun.listen({ ...common, unix: address.path }) : Bun.listen({ ...common, hostname: address.host, port: address.port });
    } catch (error) {
      throw new ListenError(`cannot listen on ${formatAddress(address)}: ${listenErrorText(error)}`);
    }
    if (certificates !== null) this.useCertificates(certificates);
  }

  /**
   * Serves these certificates to new clients from now on (a reload with renewed files, names
   * added or removed); open sessions keep theirs. Unchanged certificates are left as they are,
   * so TLS session tickets stay valid across reloads that do not touch them. True if changed.
   */
  useCertificates(certificates: LoadedCertificates): boolean {
    const server = this.server as TCPSocketListener<unknown> | null;
    if (server === null || sameCertificates(this.certificates, certificates)) return false;
    const replaceDefault = this.certificates !== null && !samePem(this.certificates.fallback, certificates.fallback);
    this.sniNames = install(server, certificates, this.sniNames, replaceDefault);
    this.certificates = certificates;
    return true;
  }

  /** The bound address, with the real port where port 0 was asked for. */
  get address(): Address {
    const address = this.options.address;
    if (address.kind === "unix" || this.server === null) return address;
    return { kind: "tcp", host: address.host, port: (this.server as TCPSocketListener<unknown>).port };
  }

  /** Stops accepting; open sessions are not touched. */
  close(): void {
    this.server?.stop(false);
    this.server = null;
  }

  accept(socket: ClientSocket): void {
    const { maxConnections } = this.options;
    const router = this.router;
    const full = maxConnections > 0 && this.active >= maxConnections;
    const noFds = router.capacity > 0 && router.sessions.size >= router.capacity;
    if (full || noFds || router.draining) {
      socket.data = undefined;
      router.stats.refused++;
      this.refused++;
      const why = router.draining
        ? "draining"
        : full
          ? `max_connections ${maxConnections} reached`
          : `the open file limit allows ${router.capacity} sessions (raise it with ulimit -n)`;
      for (const observer of router.observers) observer.refused?.(this, socket.remoteAddress ?? "", socket.remotePort ?? 0, why);
      socket.end();
      const held = this.refusals.allow();
      if (held >= 0)
        router.log.warn(
          event(`listener ${this.options.name}: ${why}, refusing connections${heldBack(held)}`, {
            listener: this.options.name,
            reason: "refused",
            detail: why,
            suppressed: held,
          }),
        );
      return;
    }
    const session = new Session(this, socket);
    socket.data = session;
    this.active++;
    this.accepted++;
    router.sessionOpened(session);
    if (!this.options.tls) this.start(session); // a TLS client starts once its handshake succeeds
  }

  /** Source checks, then the preface (PROXY header, ClientHello) or the dial. */
  start(session: Session): void {
    const { acceptProxy, routes } = this.options;
    if (acceptProxy) {
      if (!acceptProxy.has(session.clientHost)) return session.prefaceFailed("denied", "PROXY header expected from an untrusted address");
    } else if (!this.admit(session)) return;
    if (acceptProxy || routes) session.readPreface(acceptProxy != null, routes != null, this.options.helloTimeout ?? DEFAULTS.helloTimeout);
    else session.dial();
  }

  /**
   * Source checks, once the client address is known (after the PROXY header where there is
   * one): deny, allow, sessions and new sessions per second per address. Closes the session
   * and returns false when it is turned away.
   */
  admit(session: Session): boolean {
    const { allow, deny, maxConnectionsPerIp = 0, connectionRatePerIp = 0 } = this.options;
    // Without source checks the address is not read here (a getpeername(2) spared).
    if (allow == null && deny == null && maxConnectionsPerIp === 0 && connectionRatePerIp === 0) return true;
    const ip = session.clientHost;
    if (deny?.has(ip) || (allow != null && !allow.has(ip))) {
      session.prefaceFailed("denied", "address not allowed");
      return false;
    }
    if (connectionRatePerIp > 0) {
      const second = Math.floor(performance.now() / 1000);
      if (second !== this.rateSecond) {
        this.rate.clear();
        this.rateSecond = second;
      }
      const count = (this.rate.get(ip) ?? 0) + 1;
      this.rate.set(ip, count);
      if (count > connectionRatePerIp) {
        session.prefaceFailed("denied", `over connection_rate_per_ip ${connectionRatePerIp}/s`);
        return false;
      }
    }
    if (maxConnectionsPerIp > 0) {
      const open = this.perIp.get(ip) ?? 0;
      if (open >= maxConnectionsPerIp) {
        session.prefaceFailed("denied", `over max_connections_per_ip ${maxConnectionsPerIp}`);
        return false;
      }
      this.perIp.set(ip, open + 1);
      session.countedIp = true;
    }
    return true;
  }

  /** A session of this listener ended. */
  sessionEnded(session: Session): void {
    this.active--;
    if (session.countedIp) {
      const left = (this.perIp.get(session.clientHost) ?? 1) - 1;
      if (left > 0) this.perIp.set(session.clientHost, left);
      else this.perIp.delete(session.clientHost);
    }
  }

  /** SNI mode: the backend for a ClientHello's server name and ALPN, or the default (or null). */
  route(serverName: string | null, alpn: readonly string[]): Backend | null {
    return this.options.routes?.match(serverName, alpn)?.backend ?? this.backend;
  }
}

/** One line for a bind error: the errno in words, or the first line of the message. */
export function listenErrorText(error: unknown): string {
  const code = (error as { code?: string } | null)?.code;
  if (code === "EADDRINUSE") return "address already in use";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EADDRNOTAVAIL") return "address not available on this machine";
  if (code === "ENOENT") return "no such directory";
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]!;
}

/**
 * A client socket. Its `socket.data` is the session, or undefined for a connection refused at
 * accept; only on entry to `open` is it still the Listener (Bun.listen's `data`), which
 * `accept` replaces at once.
 */
export type ClientSocket = Socket<Session | undefined>;

/** Handlers of client sockets (Bun.listen). */
const clientHandlers = {
  binaryType: "buffer" as const,
  open(socket: ClientSocket) {
    (socket.data as unknown as Listener).accept(socket);
  },
  data(socket: ClientSocket, chunk: Buffer) {
    const session = socket.data;
    if (session === undefined) return;
    if (session.preface === null) session.up.push(chunk);
    else session.preface.feed(chunk);
  },
  drain(socket: ClientSocket) {
    socket.data?.down.flush();
  },
  end(socket: ClientSocket) {
    socket.data?.ended("client");
  },
  close(socket: ClientSocket, error?: Error) {
    socket.data?.socketClosed("client", error);
  },
  error(socket: ClientSocket, error: Error) {
    const session = socket.data;
    if (session !== undefined) session.router.log.debug(`client ${session.clientAddress()}: ${error.message}`);
  },
};

function samePem(a: { cert: string; key: string }, b: { cert: string; key: string }): boolean {
  return a.cert === b.cert && a.key === b.key;
}

function sameCertificates(a: LoadedCertificates | null, b: LoadedCertificates): boolean {
  if (a === null || !samePem(a.fallback, b.fallback) || a.byName.size !== b.byName.size) return false;
  for (const [name, pem] of b.byName) {
    const old = a.byName.get(name);
    if (old === undefined || !samePem(old, pem)) return false;
  }
  return true;
}

/** A TLS listener's handlers: the session starts (dials) only once the client's handshake succeeded. */
const tlsClientHandlers = {
  ...clientHandlers,
  handshake(socket: ClientSocket, success: boolean, error: Error | null) {
    const session = socket.data;
    if (session === undefined || session.closed) return;
    if (success) {
      session.sni = socket.getServername()?.toLowerCase() ?? ""; // for the logs, as in SNI mode
      session.listener.start(session);
    } else session.prefaceFailed("tls_error", `TLS handshake failed: ${error?.message ?? "unknown error"}`);
  },
};
