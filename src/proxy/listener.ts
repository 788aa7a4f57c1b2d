/**
 * A listener is one bound address: the accept stage. It binds, accepts client connections,
 * refuses those over its connection limit (or the open file limit, or while draining) and
 * starts a session for each other one; the session then runs the stages that follow
 * (admission, the preface steps, the route, the connector).
 *
 * `Bun.listen` hands every new socket the listener as `socket.data`; `open` replaces it with
 * the socket's own session (or `undefined` for a connection it refuses).
 */
import type { TCPSocketListener, UnixSocketListener } from "bun";
import type { Backend, TargetState } from "../backend/backend.ts";
import type { SessionRecord } from "./handover-record.ts";
import { formatAddress, type Address } from "../util/address.ts";
import { install, listenTls, loadCertificates, type LoadedCertificates } from "./certificates.ts";
import { readClientCertificate } from "./client-cert-route.ts";
import { event, heldBack, LogLimiter } from "../util/log.ts";
import { listenErrorText } from "../util/errors.ts";
import { removeStaleSocket } from "../util/unix-socket.ts";
import { Admission } from "./admission.ts";
import type { ClientSocket, ListenerContext, ListenerOptions, RouterContext } from "./context.ts";
import type { ListenerView } from "./handle.ts";
import { ClientHelloStep } from "./preface/client-hello.ts";
import type { PrefaceStep } from "./preface/preface.ts";
import { ProxyHeaderStep } from "./preface/proxy-header.ts";
import { Session } from "./session.ts";
import { setTcpOptions } from "./tcp-options.ts";
import { DEFAULTS } from "../config/defaults.ts";

export class ListenError extends Error {}

export type { ListenerOptions };

export class Listener implements ListenerContext, ListenerView {
  /** Sessions open through this listener now. */
  active = 0;
  /** Sessions accepted; connections refused at accept. */
  accepted = 0;
  refused = 0;
  /** The port of a socket adopted from its descriptor (Bun's listener does not know it); 0 = ask Bun. */
  private inheritedPort = 0;
  /** Turned away by allow/deny, per-IP limits, or a bad preface. */
  denied = 0;
  /** The source checks and their per-address counts (kept across reloads). */
  readonly admission: Admission;
  readonly denials = new LogLimiter();
  private server: TCPSocketListener<unknown> | UnixSocketListener<unknown> | null = null;
  private readonly refusals = new LogLimiter();
  /** A TLS listener's certificates as installed, and the SNI names installed on it so far. */
  private certificates: LoadedCertificates | null = null;
  private sniNames: ReadonlySet<string> = new Set();

  constructor(
    readonly router: RouterContext,
    /** Replaced as a whole by a reload (see `configure`). */
    public options: ListenerOptions,
  ) {
    this.admission = new Admission(options);
  }

  get name(): string {
    return this.options.name;
  }

  /** The listener's backend (an SNI listener's default route); null: none. */
  get backend(): Backend | null {
    return this.options.route.fallback;
  }

  /** A reload's options for this listener (the bound address stays). */
  configure(options: ListenerOptions): void {
    this.options = { ...options, address: this.options.address };
    this.admission.rules = options;
  }

  /** The preface steps for a new session: a PROXY header, then a ClientHello, as configured. */
  prefaceSteps(): PrefaceStep[] {
    const { acceptProxy, route } = this.options;
    if (acceptProxy === null && !route.readsClientHello) return NO_STEPS;
    const steps: PrefaceStep[] = [];
    if (acceptProxy !== null) steps.push(new ProxyHeaderStep());
    if (route.readsClientHello) steps.push(new ClientHelloStep());
    return steps;
  }

  countDenied(): void {
    this.denied++;
    this.router.counters.denied++;
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
    const tls = certificates === null ? {} : { tls: listenTls(certificates) };
    const common = {
      socket: certificates ? tlsClientHandlers : clientHandlers,
      data: this as unknown,
      allowHalfOpen: true,
      ...tls,
      ...(this.router.reusePort ? { reusePort: true } : {}),
    };
    const inherited = this.router.inherited.get(formatAddress(address));
    try {
      if (inherited !== undefined) {
        // A socket an older process (upgrade), the supervisor (workers) or systemd bound: adopted, not bound again.
        this.server = (Bun.listen as unknown as (options: unknown) => TCPSocketListener<unknown>)({ ...common, fd: inherited.fd });
        this.inheritedPort = inherited.port;
      } else if (address.kind === "unix") {
        removeStaleSocket(address.path); // a socket file a dead process left behind (util/unix-socket.ts)
        this.server = Bun.listen({ ...common, unix: address.path });
      } else this.server = Bun.listen({ ...common, hostname: address.host, port: address.port });
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
    // A changed policy is a new default context (it carries the versions, ciphers and curves).
    const old = this.certificates;
    const replaceDefault = old !== null && (!samePem(old.fallback, certificates.fallback) || old.policy !== certificates.policy);
    this.sniNames = install(server, certificates, this.sniNames, replaceDefault);
    this.certificates = certificates;
    return true;
  }

  /**
   * Why a reload cannot give this listener these certificates, or null. Replacing the default
   * context drops client verification on Bun 1.4.5 (setSecureContext keeps no requestCert), and
   * the first context's verification cannot be turned on later: a listener that verifies
   * clients, before or after, keeps its default certificate and tls_policy until a restart.
   */
  cannotTake(certificates: LoadedCertificates): string | null {
    const old = this.certificates;
    if (old === null || (old.verify === "off" && certificates.verify === "off")) return null;
    if (old.policy === certificates.policy && samePem(old.fallback, certificates.fallback)) return null;
    return "the default certificate and tls_policy of a listener that verifies client certificates cannot change on a live listener (this Bun drops client verification with a new default context); use a new address, or restart";
  }

  /** The bound address, with the real port where port 0 was asked for. */
  get address(): Address {
    const address = this.options.address;
    if (address.kind === "unix" || this.server === null) return address;
    return { kind: "tcp", host: address.host, port: this.inheritedPort || (this.server as TCPSocketListener<unknown>).port };
  }

  /** The listening socket's descriptor (to hand it to a new process); -1 when closed. */
  get fd(): number {
    return (this.server as unknown as { fd?: number } | null)?.fd ?? -1;
  }

  /**
   * In a new process after an upgrade: takes over a session's client socket from its
   * descriptor; the session is made once Bun has opened it (adoptedClientHandlers).
   */
  adopt(record: SessionRecord, backend: Backend, target: TargetState | null): void {
    const adoption: Adoption = { listener: this, record, backend, target };
    const options = { fd: record.clientFd, socket: adoptedClientHandlers, data: adoption, allowHalfOpen: true };
    (Bun.connect as unknown as (options: unknown) => Promise<unknown>)(options).catch(() => {
      if (target !== null) backend.release(target);
    });
  }

  /** A handed-over client socket is open: its session goes on here. */
  adopted(socket: ClientSocket, adoption: Adoption): void {
    const session = Session.adopted(this, socket, adoption.record, adoption.backend, adoption.target);
    socket.data = session;
    this.active++;
    this.accepted++;
    this.router.sessionOpened(session);
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
    const noFds = router.capacity > 0 && router.sessionCount >= router.capacity;
    if (full || noFds || router.draining) return this.refuse(socket, full ? "full" : noFds ? "fds" : "draining");
    if (router.capacity > 0 && this.readsFirst && router.prefacing >= router.capacity * DEFAULTS.prefaceShare) return this.refuse(socket, "prefacing");
    const session = new Session(this, socket);
    socket.data = session;
    if (this.options.tcp !== null) setTcpOptions(socket, this.options.tcp, router.log);
    this.active++;
    this.accepted++;
    router.sessionOpened(session);
    if (session.state !== "handshake") session.start(); // a TLS client starts once its handshake succeeds
  }

  /** The listener waits for the client before it dials: a TLS handshake, a PROXY header, a ClientHello. */
  private get readsFirst(): boolean {
    const { tls, acceptProxy, route } = this.options;
    return tls !== null || acceptProxy !== null || route.readsClientHello;
  }

  /** Closes a connection at accept: it never becomes a session. */
  private refuse(socket: ClientSocket, cause: "full" | "fds" | "draining" | "prefacing"): void {
    const router = this.router;
    socket.data = undefined;
    router.counters.refused++;
    this.refused++;
    const why =
      cause === "draining"
        ? "draining"
        : cause === "full"
          ? `max_connections ${this.options.maxConnections} reached`
          : cause === "fds"
            ? `the open file limit allows ${router.capacity} sessions (raise it with ulimit -n)`
            : `clients still in their handshake or preface hold ${router.prefacing} of the ${router.capacity} sessions the open file limit allows`;
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
  }

  /** A session of this listener ended. */
  sessionEnded(): void {
    this.active--;
  }
}

const NO_STEPS: PrefaceStep[] = [];

/** A client socket being adopted from an older process, and what its session needs. */
interface Adoption {
  listener: Listener;
  record: SessionRecord;
  backend: Backend;
  target: TargetState | null;
}

/** Handlers of client sockets (Bun.listen). */
const clientHandlers = {
  binaryType: "buffer" as const,
  open(socket: ClientSocket) {
    (socket.data as unknown as Listener).accept(socket);
  },
  data(socket: ClientSocket, chunk: Buffer) {
    (socket.data as Session | undefined)?.received(chunk);
  },
  drain(socket: ClientSocket) {
    (socket.data as Session | undefined)?.down.flush();
  },
  end(socket: ClientSocket) {
    (socket.data as Session | undefined)?.ended("client");
  },
  close(socket: ClientSocket, error?: Error) {
    (socket.data as Session | undefined)?.socketClosed("client", error);
  },
  error(socket: ClientSocket, error: Error) {
    const session = socket.data as Session | undefined;
    if (session !== undefined) session.router.log.debug(`client ${session.clientAddress()}: ${error.message}`);
  },
};

function samePem(a: LoadedCertificates["fallback"], b: LoadedCertificates["fallback"]): boolean {
  return (
    a.cert === b.cert &&
    a.key === b.key &&
    a.ciphers === b.ciphers &&
    a.ecdhCurve === b.ecdhCurve &&
    a.ca === b.ca &&
    a.minVersion === b.minVersion &&
    a.maxVersion === b.maxVersion
  );
}

function sameCertificates(a: LoadedCertificates | null, b: LoadedCertificates): boolean {
  if (a === null || a.policy !== b.policy || !samePem(a.fallback, b.fallback) || a.byName.size !== b.byName.size) return false;
  for (const [name, pem] of b.byName) {
    const old = a.byName.get(name);
    if (old === undefined || !samePem(old, pem)) return false;
  }
  return true;
}

/**
 * A TLS listener's handlers: the session starts (dials) only once the client's handshake
 * succeeded. Where client certificates are asked for, Bun refuses a missing one when required
 * (alert 116 / 40) but completes the handshake with one that does not verify
 * (`authorized === false`): such a client is closed here, before anything is dialled.
 */
const tlsClientHandlers = {
  ...clientHandlers,
  handshake(socket: ClientSocket, success: boolean, error: Error | null) {
    const session = socket.data as Session | undefined;
    if (session === undefined || session.closed) return;
    if (!success) return session.fail("tls_error", `TLS handshake failed: ${error?.message ?? "unknown error"}`);
    const serverName = socket.getServername()?.toLowerCase() || null;
    const verify = session.listener.options.tls?.policy?.verifyClient ?? "off";
    if (verify === "off") return session.handshakeDone(serverName);
    const certificate = readClientCertificate(socket);
    if (certificate !== null && !socket.authorized)
      return session.fail("tls_error", `client certificate ${certificate.subject} not verified: ${error?.message ?? "unknown error"}`);
    if (certificate === null && verify === "required") return session.fail("tls_error", "no client certificate");
    session.handshakeDone(serverName, certificate);
  },
};

/** Handlers of a client socket adopted from an older process: its session starts in `open`. */
const adoptedClientHandlers = {
  ...clientHandlers,
  open(socket: ClientSocket) {
    const adoption = socket.data as Adoption;
    adoption.listener.adopted(socket, adoption);
  },
};
