/**
 * The admin listener: an HTTP server (Bun.serve) on an address the user chose, off unless
 * asked for. It reads the router; only the control API under /api/ (control.ts) changes it,
 * with the bearer token.
 *
 *   GET /metrics   Prometheus text format (see metrics.ts)
 *   GET /healthz   200 "ok" while the process runs
 *   GET /readyz    200 "ready" while every listener is bound and the router is not draining,
 *                  503 "draining" from the moment stop() begins
 *   GET /status    the state as JSON (listeners, backends, targets, health, counters);
 *                  `/status?history` adds the totals of each of the last five minutes
 *   GET /          the live status page (status-page.ts), which polls /status
 *   /api/…         the control API (control.ts): list backends, set a target's state and weight
 *
 * With `protect_reads`, every path but /healthz and /readyz needs the token. A unix socket is
 * made mode 0600 (its owner only).
 *
 * The server keeps one sample of the totals per second (for the page's charts, so they are
 * full when the page opens). It owns that timer, and its Metrics observer when it made it:
 * stop() ends both.
 */
import pkg from "../../package.json" with { type: "json" };
import { formatAddress, parseAddress, type Address } from "../util/address.ts";
import { defaultLogger, type Logger } from "../util/log.ts";
import { Metrics } from "./metrics.ts";
import { listenErrorText } from "../util/errors.ts";
import { ListenError } from "../proxy/listener.ts";
import type { RouterView } from "../proxy/handle.ts";
import type { Stats } from "../proxy/handle.ts";
import { control, failure, OPEN_READS, type AdminAuth } from "./control.ts";
import { answer } from "./endpoints.ts";
import type { AdminState } from "../backend/backend.ts";
import { sourceEntries, type SourceEntries } from "../backend/sources/all.ts";
import { statusOf } from "../backend/sources/source.ts";
import { chmodSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { removeStaleSocket } from "../util/unix-socket.ts";

/**
 * HTTPS for the admin: file paths (PEM), read when it starts. With `clientCa`, only clients
 * showing a certificate that CA signed get an answer (mTLS). The config's `[admin] tls`
 * (AdminTlsConfig in config/types.ts) has this shape.
 */
export interface AdminTlsConfig {
  cert: string;
  key: string;
  clientCa: string | null;
}

/** Set by a supervisor relaying a request to a worker's internal socket: who sent it (for the audit line). */
export const CLIENT_HEADER = "x-tcprouter-client";

export interface AdminOptions {
  /** Where to serve: `host:port`, `[v6]:port`, `unix:/path`. Port 0 picks a free port. Required. */
  listen: string | Address;
  router: RouterView;
  /** Default: a new Metrics, attached to the router now and detached on stop(). */
  metrics?: Metrics;
  /** Default: warnings and errors to stderr. Audit lines are info, tagged `admin`. */
  logger?: Logger;
  /** Default: no token (changes answer 403), open reads. */
  auth?: AdminAuth;
  /** Take the audit line's client from CLIENT_HEADER: only for a worker's internal socket, which only its supervisor reaches. Default false. */
  trustClientHeader?: boolean;
  /** What POST /api/upgrade starts; absent: it answers 409. */
  upgrade?: () => void;
  /** HTTPS with this certificate, and with `clientCa` only clients whose certificate it signed (files read at start). Default: plain HTTP. */
  tls?: AdminTlsConfig | null;
}

export interface AdminServer {
  /** The bound address (`127.0.0.1:9901`, `unix:/run/tcprouter-admin.sock`). */
  readonly address: string;
  /** The bound port (0 for a unix socket). */
  readonly port: number;
  /** `http://127.0.0.1:9901/`, `https://…` with TLS (for a unix socket, `unix:///path`). */
  readonly url: string;
  readonly metrics: Metrics;
  stop(): Promise<void>;
}

/** What /status returns. Byte counts include open sessions. */
export interface Status {
  version: string;
  /** When this status was taken (ISO 8601). */
  time: string;
  startedAt: string;
  uptimeSeconds: number;
  /** Listeners bound and not draining: what /readyz answers. */
  ready: boolean;
  draining: boolean;
  totals: Stats;
  listeners: ListenerStatus[];
  backends: BackendStatus[];
  process: { rssBytes: number; cpuSeconds: number };
  /** Only with `?history`: one sample per second, oldest first. */
  history?: HistorySample[];
}

/** Totals at one moment; rates are the differences between samples. */
export interface HistorySample {
  /** ms since the epoch. */
  t: number;
  activeSessions: number;
  totalSessions: number;
  bytesUp: number;
  bytesDown: number;
}

/** Samples kept: five minutes at one a second. */
const HISTORY_LENGTH = 300;

export interface ListenerStatus {
  name: string;
  address: string;
  backend: string;
  /** Sessions open now. */
  active: number;
  /** Sessions accepted since start. */
  accepted: number;
  /** Connections closed at accept (max_connections, the open file limit, draining). */
  refused: number;
  bytesUp: number;
  bytesDown: number;
  /** A UDP listener (docs/udp.md): `active` and `accepted` count its flows, `refused` datagrams dropped at a limit. Absent for TCP. */
  protocol?: "udp";
  udp?: UdpListenerStatus;
}

/** A UDP listener's datagrams, by direction, and those it dropped, by reason. */
export interface UdpListenerStatus {
  datagramsUp: number;
  datagramsDown: number;
  dropped: Record<string, number>;
}

/** A backend, and the fields of each target source that serves it, under the source's kind (absent for listed targets). */
export type BackendStatus = {
  name: string;
  targets: TargetStatus[];
} & SourceEntries;

export interface TargetStatus {
  target: string;
  healthy: boolean;
  /** The admin state; with workers, "mixed" when they disagree (one was restarted since the change). */
  state: AdminState | "mixed";
  active: number;
  sessions: number;
  connectFailures: number;
  weight: number;
  backup: boolean;
  maxConnections: number;
  /** Passive ejection (max_fails): ms since the epoch until which it stays down; 0 = not ejected. */
  ejectedUntil?: number;
  /** slow_start: ms since the epoch at which its weight ramp ends; 0 = not ramping. */
  slowStartUntil?: number;
}

const STARTED_AT = new Date(performance.timeOrigin);

/** The UDP listeners' lines of /status: flows in `active` and `accepted`, their datagrams and drops under `udp`. */
function udpListenerStatus(router: RouterView): ListenerStatus[] {
  return (router.udpListeners ?? []).map((listener) => ({
    name: listener.name,
    address: formatAddress(listener.address),
    backend: listener.backend?.name ?? "-",
    active: listener.active,
    accepted: listener.accepted,
    refused: listener.refused,
    bytesUp: listener.bytesUp,
    bytesDown: listener.bytesDown,
    protocol: "udp",
    udp: { datagramsUp: listener.datagramsUp, datagramsDown: listener.datagramsDown, dropped: { ...listener.dropped } },
  }));
}

/** Listeners bound and not draining. */
export function isReady(router: RouterView): boolean {
  return router.listeners.length > 0 && !router.draining;
}

export function status(router: RouterView, metrics: Metrics): Status {
  const bytes = metrics.bytesByListener();
  const cpu = process.cpuUsage();
  const now = Date.now();
  return {
    version: pkg.version,
    time: new Date(now).toISOString(),
    startedAt: STARTED_AT.toISOString(),
    uptimeSeconds: Math.round((now - STARTED_AT.getTime()) / 100) / 10,
    ready: isReady(router),
    draining: router.draining,
    totals: router.stats(),
    listeners: router.listeners
      .map((listener) => ({
        name: listener.name,
        address: formatAddress(listener.address),
        backend: listener.backend?.name ?? "-",
        active: listener.active,
        accepted: listener.accepted,
        refused: listener.refused,
        bytesUp: bytes.get(listener.name)?.up ?? 0,
        bytesDown: bytes.get(listener.name)?.down ?? 0,
      }))
      .concat(udpListenerStatus(router)),
    backends: [...router.backends.values()].map((backend) => ({
      ...sourceEntries(statusOf(router.sources, backend.name)),
      name: backend.name,
      targets: backend.targets.map((target) => ({
        target: target.key,
        healthy: target.healthy,
        state: target.state,
        active: target.active,
        sessions: target.sessions,
        connectFailures: target.connectFailures,
        weight: target.weight,
        backup: target.backup,
        maxConnections: target.maxConnections,
        ejectedUntil: target.ejectedUntil ?? 0,
        slowStartUntil: target.slowStartUntil ?? 0,
      })),
    })),
    process: { rssBytes: process.memoryUsage.rss(), cpuSeconds: (cpu.user + cpu.system) / 1e6 },
  };
}

/** Serves the admin endpoints. Throws ListenError (one line) when the address cannot be bound. */
export function startAdmin(options: AdminOptions): AdminServer {
  const address = typeof options.listen === "string" ? parseAddress(options.listen, true) : options.listen;
  const router = options.router;
  const log = options.logger ?? defaultLogger;
  const owned = options.metrics === undefined;
  const metrics = options.metrics ?? new Metrics(router).attach();
  const history: HistorySample[] = [];
  const auth = options.auth ?? OPEN_READS;
  const audit = log.withTag("admin");

  const fetch = (request: Request, server: AdminHttpServer): Promise<Response> =>
    answer(
      request,
      {
        metrics: () => metrics.render(),
        readiness: () => ({ ready: isReady(router), reason: router.draining ? "draining" : "no listeners" }),
        status: (withHistory) => {
          const body = status(router, metrics);
          if (withHistory) body.history = history;
          return body;
        },
        api: (apiRequest) => {
          const who = (options.trustClientHeader ? apiRequest.headers.get(CLIENT_HEADER) : null) ?? clientOf(server, apiRequest);
          return control(apiRequest, {
            router,
            auth,
            log: audit,
            who,
            holdOpen: () => server.timeout(apiRequest, 0),
            ...(options.upgrade ? { upgrade: options.upgrade } : {}),
          });
        },
      },
      auth,
    );
  let served: { server: ReturnType<typeof Bun.serve>; bound: Address };
  try {
    served = serveAdmin(address, fetch, log, options.tls ?? null);
  } catch (error) {
    if (owned) metrics.detach();
    throw error;
  }
  const { server, bound } = served;
  const sampler = setInterval(sample, 1000, router, history);
  sampler.unref();
  const text = formatAddress(bound);
  return {
    address: text,
    port: bound.kind === "tcp" ? bound.port : 0,
    url: bound.kind === "tcp" ? `${options.tls ? "https" : "http"}://${text}/` : `unix://${bound.path}`,
    metrics,
    async stop() {
      clearInterval(sampler);
      if (owned) metrics.detach();
      await server.stop(true);
    },
  };
}

function sample(router: RouterView, history: HistorySample[]): void {
  const { activeSessions, totalSessions, bytesUp, bytesDown } = router.stats();
  history.push({ t: Date.now(), activeSessions, totalSessions, bytesUp, bytesDown });
  if (history.length > HISTORY_LENGTH) history.shift();
}

export type AdminHttpServer = ReturnType<typeof Bun.serve>;

/** The peer of a request, for audit lines: `127.0.0.1:5123`, or `unix` on a unix socket. */
export function clientOf(server: AdminHttpServer, request: Request): string {
  const peer = server.requestIP(request);
  if (peer === null || peer.address === "") return "unix";
  return peer.family === "IPv6" ? `[${peer.address}]:${peer.port}` : `${peer.address}:${peer.port}`;
}

/**
 * Bun.serve on an admin address; a bind error becomes a one-line ListenError. A unix socket is
 * created mode 0600: only its owner (and root) can connect; a stale one a dead process left is
 * removed first (util/unix-socket.ts). With `tls`, HTTPS; with its `clientCa`, a client without
 * a certificate that CA signed fails the handshake (Bun.serve's requestCert and
 * rejectUnauthorized, checked on Bun 1.4.5 in test/observe/admin-hardening.test.ts).
 */
export function serveAdmin(
  address: Address,
  fetch: (request: Request, server: AdminHttpServer) => Response | Promise<Response>,
  log: Logger,
  tls: AdminTlsConfig | null = null,
): { server: AdminHttpServer; bound: Address } {
  const error = (cause: Error): Response => {
    log.warn(`admin: ${cause.message}`);
    return failure(500, "internal error");
  };
  let server: AdminHttpServer;
  let tlsOptions: Record<string, unknown> = {};
  try {
    if (tls !== null) tlsOptions = { tls: adminTlsOptions(tls) };
  } catch (cause) {
    throw new ListenError(`admin: cannot listen on ${formatAddress(address)}: ${(cause as Error).message}`);
  }
  // The umask makes the socket 0600 from the start (no moment when others could connect).
  const umask = address.kind === "unix" ? process.umask(0o177) : null;
  try {
    if (address.kind === "unix") removeStaleSocket(address.path);
    server =
      address.kind === "unix"
        ? Bun.serve({ unix: address.path, fetch, error, development: false, ...tlsOptions })
        : Bun.serve({ hostname: address.host, port: address.port, fetch, error, development: false, ...tlsOptions });
    if (address.kind === "unix") chmodSync(address.path, 0o600);
  } catch (cause) {
    throw new ListenError(`admin: cannot listen on ${formatAddress(address)}: ${listenErrorText(cause)}`);
  } finally {
    if (umask !== null) process.umask(umask);
  }
  return { server, bound: address.kind === "unix" ? address : { ...address, port: server.port ?? address.port } };
}

/** Bun.serve's `tls` for the admin: the files read now; a client CA makes a certificate it signed required. */
function adminTlsOptions(tls: AdminTlsConfig): Record<string, unknown> {
  const read = (path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch (error) {
      throw new Error(`cannot read ${path}: ${listenErrorText(error)}`);
    }
  };
  const options: Record<string, unknown> = { cert: read(tls.cert), key: read(tls.key) };
  if (tls.clientCa !== null) Object.assign(options, { ca: read(tls.clientCa), requestCert: true, rejectUnauthorized: true });
  return options;
}

/** Addresses that only this machine reaches: 127.0.0.0/8, ::1, localhost, a unix socket. */
function isLoopback(address: Address): boolean {
  if (address.kind === "unix") return true;
  const host = address.host.toLowerCase().replace(/\.$/, "");
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1";
  return host === "localhost" || host.endsWith(".localhost");
}

/**
 * The start-up warning for an admin reachable beyond this machine (not loopback, not a unix
 * socket) whose reads are open (`/status` and `/metrics` show every listener, backend and
 * target) or that speaks plain HTTP (the token crosses the network in clear); null when neither.
 */
export function adminExposure(address: Address, auth: AdminAuth, tls: AdminTlsConfig | null): string | null {
  if (isLoopback(address)) return null;
  const problems: string[] = [];
  if (!auth.protectReads) problems.push("its reads are open (/status and /metrics show every listener, backend and target: set [admin] protect_reads = true)");
  if (tls === null) problems.push("it speaks plain HTTP (the token travels in clear: set [admin] tls)");
  if (problems.length === 0) return null;
  return `admin on ${formatAddress(address)} is reachable beyond this machine and ${problems.join(", and ")}`;
}
