/**
 * The router owns the listeners and every open session: it counts them, sweeps idle ones and
 * drains them on stop. `forward({ listen, to })` is the one-route form the CLI uses.
 */
import { AddressError, formatAddress, parseAddress, type Address } from "./address.ts";
import { DurationError, parseDuration } from "./duration.ts";
import { Listener, ListenError } from "./listener.ts";
import { defaultLogger, type Logger } from "./log.ts";
import type { Session } from "./session.ts";

export interface ForwardOptions {
  /** Address to listen on: `host:port`, `[v6]:port`, `name:port` or `unix:/path`. Port 0 picks a free port. Default `127.0.0.1:11000`. */
  listen?: string;
  /** Target address, same forms as `listen`. Required. */
  to: string;
  /** Give up on an upstream connect after this long (ms, or `"10s"`). Default 10s; 0 = off. */
  connectTimeout?: number | string;
  /** Close a session that moved no bytes either way for this long. Default 0 = off. */
  idleTimeout?: number | string;
  /** Sessions open at once; connections beyond are closed at once and counted. Default 0 = no limit. */
  maxConnections?: number;
  /** On `stop()`, how long open sessions may take to finish before they are closed. Default 10s. */
  drainTimeout?: number | string;
  /** Bytes queued in one direction before its reading side is paused. Default 1 MiB. */
  highWaterMark?: number;
  /** A paused reading side resumes when the queue is at or below this. Default 256 KiB. */
  lowWaterMark?: number;
  /** Where log lines go. Default: warnings and errors to stderr. */
  logger?: Logger;
}

export const DEFAULTS = {
  listen: "127.0.0.1:11000",
  connectTimeout: 10_000,
  idleTimeout: 0,
  maxConnections: 0,
  drainTimeout: 10_000,
  highWaterMark: 1024 * 1024,
  lowWaterMark: 256 * 1024,
} as const;

export interface Stats {
  /** Sessions open now. */
  activeSessions: number;
  /** Sessions accepted since start. */
  totalSessions: number;
  /** Bytes read from clients (client → upstream). */
  bytesUp: number;
  /** Bytes read from upstreams (upstream → client). */
  bytesDown: number;
  /** Upstream connects that failed or timed out. */
  connectFailures: number;
  /** Connections closed at accept: over max connections, or while draining. */
  refused: number;
  /** Bytes queued in pipes now, waiting for a slow reader. */
  queuedBytes: number;
  /** Bytes that could not be delivered because their destination was gone. */
  droppedBytes: number;
}

export interface StopSummary {
  /** Sessions that finished on their own during the drain. */
  drained: number;
  /** Sessions still open at the deadline, closed by force. */
  closed: number;
  durationMs: number;
}

export interface ForwardHandle {
  /** The bound address (`127.0.0.1:43211`, `unix:/tmp/x.sock`). */
  readonly address: string;
  /** The bound port (0 for unix sockets). */
  readonly port: number;
  stats(): Stats;
  /** Stops accepting, waits for open sessions up to the drain timeout, then closes the rest. */
  stop(options?: { drainTimeout?: number | string }): Promise<StopSummary>;
}

export class OptionsError extends Error {}

export interface Limits {
  highWaterMark: number;
  lowWaterMark: number;
}

export class Router {
  readonly sessions = new Set<Session>();
  readonly stats = { totalSessions: 0, bytesUp: 0, bytesDown: 0, connectFailures: 0, refused: 0, droppedBytes: 0 };
  readonly listeners: Listener[] = [];
  draining = false;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private sweepTicks = 0;
  private onEmpty: (() => void) | null = null;

  constructor(
    readonly options: { connectTimeout: number; idleTimeout: number; drainTimeout: number },
    readonly limits: Limits,
    readonly log: Logger,
  ) {
    if (options.idleTimeout > 0) {
      const tick = Math.min(1000, Math.max(10, Math.floor(options.idleTimeout / 10)));
      this.sweepTicks = Math.ceil(options.idleTimeout / tick);
      this.sweepTimer = setInterval(sweepIdle, tick, this);
      this.sweepTimer.unref();
    }
  }

  sessionOpened(session: Session): void {
    this.sessions.add(session);
    this.stats.totalSessions++;
  }

  sessionClosed(session: Session): void {
    this.sessions.delete(session);
    this.stats.bytesUp += session.up.bytes;
    this.stats.bytesDown += session.down.bytes;
    if (this.sessions.size === 0) this.onEmpty?.();
  }

  /** Closes sessions that have been idle for the idle timeout. */
  sweep(): void {
    for (const session of this.sessions) {
      if (++session.idleTicks >= this.sweepTicks) session.close("idle_timeout");
    }
  }

  snapshot(): Stats {
    let bytesUp = this.stats.bytesUp;
    let bytesDown = this.stats.bytesDown;
    let queuedBytes = 0;
    for (const session of this.sessions) {
      bytesUp += session.up.bytes;
      bytesDown += session.down.bytes;
      queuedBytes += session.up.queued + session.down.queued;
    }
    const { totalSessions, connectFailures, refused, droppedBytes } = this.stats;
    return { activeSessions: this.sessions.size, totalSessions, bytesUp, bytesDown, connectFailures, refused, queuedBytes, droppedBytes };
  }

  async stop(drainTimeout = this.options.drainTimeout): Promise<StopSummary> {
    const started = Date.now();
    this.draining = true;
    for (const listener of this.listeners) listener.close();
    const before = this.sessions.size;
    if (before > 0 && drainTimeout > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainTimeout);
        this.onEmpty = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.onEmpty = null;
    }
    const closed = this.sessions.size;
    for (const session of this.sessions) session.close("drained");
    clearInterval(this.sweepTimer);
    return { drained: before - closed, closed, durationMs: Date.now() - started };
  }
}

function sweepIdle(router: Router): void {
  router.sweep();
}

/** Resolves option values, throwing OptionsError with the option's name on bad input. */
export function resolveOptions(options: ForwardOptions) {
  const duration = (name: keyof ForwardOptions, value: number | string | undefined, fallback: number) => {
    try {
      return value === undefined ? fallback : parseDuration(value);
    } catch (error) {
      throw new OptionsError(`${name}: ${(error as DurationError).message}`);
    }
  };
  const address = (name: string, value: string | undefined, listen: boolean): Address => {
    if (value === undefined || value === "") throw new OptionsError(`${name}: an address is required`);
    try {
      return parseAddress(value, listen);
    } catch (error) {
      throw new OptionsError(`${name}: ${(error as AddressError).message}`);
    }
  };
  const count = (name: string, value: number | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || value < 0) throw new OptionsError(`${name}: "${value}" is not a whole number ≥ 0`);
    return value;
  };
  const highWaterMark = count("highWaterMark", options.highWaterMark, DEFAULTS.highWaterMark);
  const lowWaterMark = Math.min(count("lowWaterMark", options.lowWaterMark, DEFAULTS.lowWaterMark), highWaterMark);
  return {
    listen: address("listen", options.listen ?? DEFAULTS.listen, true),
    to: address("to", options.to, false),
    connectTimeout: duration("connectTimeout", options.connectTimeout, DEFAULTS.connectTimeout),
    idleTimeout: duration("idleTimeout", options.idleTimeout, DEFAULTS.idleTimeout),
    drainTimeout: duration("drainTimeout", options.drainTimeout, DEFAULTS.drainTimeout),
    maxConnections: count("maxConnections", options.maxConnections, DEFAULTS.maxConnections),
    limits: { highWaterMark: Math.max(1, highWaterMark), lowWaterMark },
  };
}

/**
 * Listens on `listen` and forwards every connection to `to`.
 * Rejects with OptionsError or ListenError (one-line messages) before anything is left open.
 */
export async function forward(options: ForwardOptions): Promise<ForwardHandle> {
  const resolved = resolveOptions(options);
  const router = new Router(resolved, resolved.limits, options.logger ?? defaultLogger);
  const listener = new Listener(router, { address: resolved.listen, target: resolved.to, maxConnections: resolved.maxConnections });
  try {
    listener.open();
  } catch (error) {
    await router.stop(0);
    throw error;
  }
  router.listeners.push(listener);
  const bound = listener.address;
  return {
    address: formatAddress(bound),
    port: bound.kind === "tcp" ? bound.port : 0,
    stats: () => router.snapshot(),
    stop: (stopOptions) => router.stop(stopOptions?.drainTimeout === undefined ? undefined : parseDuration(stopOptions.drainTimeout)),
  };
}

export { ListenError };
