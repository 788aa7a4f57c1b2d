/**
 * A listener is one bound address. It accepts client connections, applies its connection limit
 * and starts a session for each, dialled to its target.
 *
 * `Bun.listen` hands every new socket the listener as `socket.data`; `open` replaces it with
 * the socket's own session (or `undefined` for a connection it refuses).
 */
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import { formatAddress, type Address } from "./address.ts";
import type { Backend } from "./backend.ts";
import { heldBack, LogLimiter } from "./log.ts";
import type { Router } from "./router.ts";
import { Session } from "./session.ts";

export class ListenError extends Error {}

export interface ListenerOptions {
  /** Unique in a router; used in logs and metrics. */
  name: string;
  address: Address;
  backend: Backend;
  /** Sessions open at once through this listener; 0 = no limit. */
  maxConnections: number;
  /** ms for one upstream connect attempt; 0 = no limit. */
  connectTimeout: number;
  /** ms without bytes either way after which a session is closed; 0 = off. */
  idleTimeout: number;
}

export class Listener {
  /** Sessions open through this listener now. */
  active = 0;
  /** Sessions accepted; connections refused at accept. */
  accepted = 0;
  refused = 0;
  /** Idle sweeps after which a session is closed (set by the router); 0 = never. */
  idleTicks = 0;
  /** Where new sessions go. */
  backend: Backend;
  private server: TCPSocketListener<unknown> | UnixSocketListener<unknown> | null = null;
  private readonly refusals = new LogLimiter();

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
    // reusePort is missing from Bun's types for listen; it works on Linux (see workers.ts).
    const common = { socket: clientHandlers, data: this as unknown, allowHalfOpen: true, ...(this.router.reusePort ? { reusePort: true } : {}) };
    try {
      this.server =
        address.kind === "unix"
          ? Bun.listen({ ...common, unix: address.path })
          : Bun.listen({ ...common, hostname: address.host, port: address.port });
    } catch (error) {
      throw new ListenError(`cannot listen on ${formatAddress(address)}: ${listenErrorText(error)}`);
    }
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

  accept(socket: Socket<Session>): void {
    const { maxConnections } = this.options;
    const router = this.router;
    const full = maxConnections > 0 && this.active >= maxConnections;
    const noFds = router.capacity > 0 && router.sessions.size >= router.capacity;
    if (full || noFds || router.draining) {
      socket.data = undefined as unknown as Session;
      router.stats.refused++;
      this.refused++;
      socket.end();
      const held = this.refusals.allow();
      if (held >= 0) {
        const why = router.draining
          ? "draining"
          : full
            ? `max_connections ${maxConnections} reached`
            : `the open file limit allows ${router.capacity} sessions (raise it with ulimit -n)`;
        router.log.warn(`listener ${this.options.name}: ${why}, refusing connections${heldBack(held)}`);
      }
      return;
    }
    const session = new Session(this, socket);
    socket.data = session;
    this.active++;
    this.accepted++;
    router.sessionOpened(session);
    session.dial();
  }
}

function listenErrorText(error: unknown): string {
  const code = (error as { code?: string } | null)?.code;
  if (code === "EADDRINUSE") return "address already in use";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EADDRNOTAVAIL") return "address not available on this machine";
  if (code === "ENOENT") return "no such directory";
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]!;
}

/** Handlers of client sockets (Bun.listen). `socket.data` is the session, or undefined if refused. */
const clientHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Session>) {
    (socket.data as unknown as Listener).accept(socket);
  },
  data(socket: Socket<Session>, chunk: Buffer) {
    socket.data?.up.push(chunk);
  },
  drain(socket: Socket<Session>) {
    socket.data?.down.flush();
  },
  end(socket: Socket<Session>) {
    socket.data?.ended("client");
  },
  close(socket: Socket<Session>, error?: Error) {
    socket.data?.socketClosed("client", error);
  },
  error(socket: Socket<Session>, error: Error) {
    const session = socket.data;
    if (session !== undefined) session.router.log.debug(`client ${session.clientAddress()}: ${error.message}`);
  },
};
