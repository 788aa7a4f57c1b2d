/**
 * Prometheus metrics of a router, in the text exposition format (version 0.0.4), written here:
 * the format is a few lines of text and a client library would add a registry we do not need.
 *
 * `Metrics` is a session observer. Its hooks run on the forwarding path, so they only bump
 * numbers in cells whose label text was built when the cell was made (once per listener,
 * backend and target): no string is built per session. Everything else (active sessions,
 * refused connections, target health, process figures) is read from the router when scraped.
 *
 * Bytes are counted when a session closes, plus, at scrape time, the bytes so far of sessions
 * that are connected (their target can no longer change), so the counters rise while a long
 * session runs and never go down.
 */
import pkg from "../../package.json" with { type: "json" };
import { ADMIN_STATES, type Backend, type TargetState } from "../backend/backend.ts";
import type { CloseReason, FlowView, RouterView, SessionObserver, SessionView } from "../proxy/handle.ts";
import { CONNECT_BUCKETS, escapeLabel, Histogram, Output, SESSION_BUCKETS, writeProcessMetrics } from "./prometheus.ts";
import type { SourceMetric, SourceView } from "../backend/sources/source.ts";
import { rateStats } from "../proxy/rate.ts";
import { FlowMetrics } from "./udp-metrics.ts";

/**
 * Close reasons exported at zero from the start. A reason not listed here is counted too,
 * from the first session that ends with it.
 */
export const CLOSE_REASONS: readonly string[] = [
  "client_fin",
  "upstream_fin",
  "client_reset",
  "upstream_reset",
  "write_error",
  "idle_timeout",
  "write_timeout",
  "half_closed_timeout",
  "max_duration",
  "connect_failed",
  "connect_timeout",
  "no_target",
  "queue_timeout",
  "denied",
  "target_maint",
  "target_down",
  "handed_over",
  "drained",
] satisfies CloseReason[];

/** One listener × backend × target: sessions that connected, and their bytes. */
interface RouteCell {
  /** `listener="…",backend="…",target="…"` */
  readonly labels: string;
  /** The target key; "-" for sessions that never had a target. */
  readonly key: string;
  sessions: number;
  bytesUp: number;
  bytesDown: number;
}

interface ListenerCell {
  /** `listener="…"` */
  readonly labels: string;
  readonly duration: Histogram;
  /** By close reason. */
  readonly closed: Record<string, number>;
  /** By backend name, then target key. A target key may be "-" (no target was ever picked). */
  readonly routes: Map<string, Map<string, RouteCell>>;
}

/** One backend × target: connect latency and failed connect attempts. */
interface TargetCell {
  /** `backend="…",target="…"` */
  readonly labels: string;
  readonly connect: Histogram;
  /** Failed attempts by reason, from the `connectFailed` hook. */
  failed: number;
  timedOut: number;
  /** Sessions that ended with connect_timeout (for when the hook is not called). */
  timeouts: number;
}

/** Bytes of one listener, for the status page. */
export interface ListenerBytes {
  up: number;
  down: number;
}

/**
 * Cells are found by name (listener name, backend name, target key), not by object: a reload
 * makes new Listener and Backend objects, and their counters go on where the old ones stopped.
 */
export class Metrics implements SessionObserver {
  private readonly listeners = new Map<string, ListenerCell>();
  private readonly targets = new Map<string, Map<string, TargetCell>>();
  /** Connected sessions and the cell their bytes go to. */
  private readonly live = new Map<SessionView, RouteCell>();
  /** The session layer calls `connectFailed` (else failures are derived from the targets' counts). */
  private failuresHooked = false;
  /** The UDP listeners' flows (udp-metrics.ts). */
  private readonly flows = new FlowMetrics();

  constructor(readonly router: RouterView) {}

  private unobserve: (() => void) | null = null;

  /** Observes the router's sessions (once). */
  attach(): this {
    this.unobserve ??= this.router.observe(this);
    return this;
  }

  detach(): void {
    this.unobserve?.();
    this.unobserve = null;
  }

  connected(session: SessionView, connectMs: number): void {
    const target = session.target;
    if (target === null) return;
    const backend = session.backend.name;
    const route = this.route(this.listenerCell(session.listener.name), backend, target.key);
    route.sessions++;
    this.live.set(session, route);
    this.targetCell(backend, target.key).connect.observe(connectMs / 1000);
  }

  connectFailed(session: SessionView, target: TargetState, reason: "connect_failed" | "connect_timeout"): void {
    this.failuresHooked = true;
    const cell = this.targetCell(session.backend.name, target.key);
    if (reason === "connect_timeout") cell.timedOut++;
    else cell.failed++;
  }

  closed(session: SessionView): void {
    const cell = this.listenerCell(session.listener.name);
    const reason = session.reason ?? "client_fin";
    cell.closed[reason] = (cell.closed[reason] ?? 0) + 1;
    cell.duration.observe((Date.now() - session.openedAt) / 1000);
    let route = this.live.get(session);
    if (route === undefined) route = this.route(cell, session.backend.name, session.targetKey);
    else this.live.delete(session);
    route.bytesUp += session.up.bytes;
    route.bytesDown += session.down.bytes;
    if (reason === "connect_timeout") this.targetCell(session.backend.name, session.targetKey).timeouts++;
  }

  flowClosed(flow: FlowView): void {
    this.flows.closed(flow);
  }

  /** Bytes through each listener (by name) since start, open sessions included. */
  bytesByListener(): Map<string, ListenerBytes> {
    const out = new Map<string, ListenerBytes>();
    for (const [listener, cell] of this.listeners) {
      const bytes = { up: 0, down: 0 };
      for (const routes of cell.routes.values()) {
        for (const route of routes.values()) {
          bytes.up += route.bytesUp;
          bytes.down += route.bytesDown;
        }
      }
      out.set(listener, bytes);
    }
    for (const session of this.live.keys()) {
      const bytes = out.get(session.listener.name);
      if (bytes === undefined) continue;
      bytes.up += session.up.bytes;
      bytes.down += session.down.bytes;
    }
    for (const listener of this.router.udpListeners ?? []) out.set(listener.name, { up: listener.bytesUp, down: listener.bytesDown });
    return out;
  }

  /** The whole exposition, every known series included (zero where nothing happened yet). */
  render(): string {
    this.knowEveryCell();
    const out = new Output();
    out.family("tcprouter_build_info", "gauge", "Always 1; the version is a label.");
    out.sample("tcprouter_build_info", `version="${escapeLabel(pkg.version)}"`, 1);
    this.writeListeners(out);
    this.writeRoutes(out);
    this.writeConnects(out);
    writeTargets(out, this.router);
    writeSourceMetrics(out, this.router.sources);
    writeTotals(out, this.router);
    writeProcessMetrics(out);
    return out.text();
  }

  /** Every listener × target and every target has a cell, so a fresh router exposes them at zero. */
  private knowEveryCell(): void {
    const router = this.router;
    for (const listener of router.listeners) {
      const cell = this.listenerCell(listener.name);
      if (listener.backend !== null) for (const target of listener.backend.targets) this.route(cell, listener.backend.name, target.key);
    }
    for (const backend of router.backends.values()) for (const target of backend.targets) this.targetCell(backend.name, target.key);
  }

  /** By listener: sessions open, refused, closed by reason, their durations. */
  private writeListeners(out: Output): void {
    const router = this.router;
    out.family("tcprouter_sessions_active", "gauge", "Sessions open now, by listener (connecting ones included).");
    for (const listener of router.listeners) out.sample("tcprouter_sessions_active", this.listenerCell(listener.name).labels, listener.active);
    out.family(
      "tcprouter_connections_refused_total",
      "counter",
      "Connections closed at accept (max_connections reached, the open file limit, or draining), by listener.",
    );
    for (const listener of router.listeners) out.sample("tcprouter_connections_refused_total", this.listenerCell(listener.name).labels, listener.refused);
    out.family("tcprouter_sessions_closed_total", "counter", "Sessions ended, by listener and close reason.");
    for (const cell of this.listeners.values()) {
      for (const [reason, count] of Object.entries(cell.closed))
        out.sample("tcprouter_sessions_closed_total", `${cell.labels},reason="${escapeLabel(reason)}"`, count);
    }
    out.family("tcprouter_session_duration_seconds", "histogram", "How long sessions lasted, from accept to close, by listener.");
    for (const cell of this.listeners.values()) out.histogram("tcprouter_session_duration_seconds", cell.labels, cell.duration);
  }

  /** By listener × backend × target: sessions connected, and bytes each way (open sessions' included). */
  private writeRoutes(out: Output): void {
    const routes = [...this.listeners.values()].flatMap((cell) => [...cell.routes.values()].flatMap((byKey) => [...byKey.values()]));
    const live = new Map<RouteCell, ListenerBytes>();
    for (const [session, route] of this.live) {
      const bytes = live.get(route) ?? { up: 0, down: 0 };
      bytes.up += session.up.bytes;
      bytes.down += session.down.bytes;
      live.set(route, bytes);
    }
    out.family("tcprouter_sessions_total", "counter", "Sessions whose upstream connection opened, by listener, backend and target.");
    for (const route of routes) if (route.key !== "-") out.sample("tcprouter_sessions_total", route.labels, route.sessions);
    out.family(
      "tcprouter_bytes_total",
      "counter",
      'Bytes read from clients (direction="up") and from upstreams (direction="down"), by listener, backend and target.',
    );
    for (const route of routes) {
      const extra = live.get(route);
      out.sample("tcprouter_bytes_total", `${route.labels},direction="up"`, route.bytesUp + (extra?.up ?? 0));
      out.sample("tcprouter_bytes_total", `${route.labels},direction="down"`, route.bytesDown + (extra?.down ?? 0));
    }
  }

  /** By backend × target: connect attempts that failed or timed out, and how long connects took. */
  private writeConnects(out: Output): void {
    this.flows.write(out, this.router.udpListeners ?? []);

    out.family(
      "tcprouter_connect_failures_total",
      "counter",
      "Upstream connect attempts that failed (refused, unreachable) or timed out, by backend and target.",
    );
    for (const [name, cells] of this.targets) {
      const backend = this.router.backends.get(name);
      for (const [key, cell] of cells) {
        let failed = cell.failed;
        let timedOut = cell.timedOut;
        if (!this.failuresHooked) {
          // Without the hook: the target counts every failed attempt, and a timeout is known
          // only when it ended the session (a timed-out attempt that was retried counts as failed).
          const state = backend?.targets.find((target) => target.key === key);
          timedOut = cell.timeouts;
          failed = Math.max(0, (state?.connectFailures ?? timedOut) - timedOut);
        }
        out.sample("tcprouter_connect_failures_total", `${cell.labels},reason="connect_failed"`, failed);
        out.sample("tcprouter_connect_failures_total", `${cell.labels},reason="connect_timeout"`, timedOut);
      }
    }
    out.family("tcprouter_connect_duration_seconds", "histogram", "Time from picking a target to the upstream connection being open, by backend and target.");
    for (const cells of this.targets.values())
      for (const cell of cells.values()) out.histogram("tcprouter_connect_duration_seconds", cell.labels, cell.connect);
  }

  private listenerCell(name: string): ListenerCell {
    let cell = this.listeners.get(name);
    if (cell === undefined) {
      const closed: Record<string, number> = {};
      for (const reason of CLOSE_REASONS) closed[reason] = 0;
      cell = { labels: `listener="${escapeLabel(name)}"`, duration: new Histogram(SESSION_BUCKETS), closed, routes: new Map() };
      this.listeners.set(name, cell);
    }
    return cell;
  }

  private route(cell: ListenerCell, backend: string, key: string): RouteCell {
    let byKey = cell.routes.get(backend);
    if (byKey === undefined) cell.routes.set(backend, (byKey = new Map()));
    let route = byKey.get(key);
    if (route === undefined) {
      const labels = `${cell.labels},backend="${escapeLabel(backend)}",target="${escapeLabel(key)}"`;
      byKey.set(key, (route = { labels, key, sessions: 0, bytesUp: 0, bytesDown: 0 }));
    }
    return route;
  }

  private targetCell(backend: string, key: string): TargetCell {
    let byKey = this.targets.get(backend);
    if (byKey === undefined) this.targets.set(backend, (byKey = new Map()));
    let cell = byKey.get(key);
    if (cell === undefined) {
      cell = { labels: targetLabels(backend, key), connect: new Histogram(CONNECT_BUCKETS), failed: 0, timedOut: 0, timeouts: 0 };
      byKey.set(key, cell);
    }
    return cell;
  }
}

function targetLabels(backend: string, key: string): string {
  return `backend="${escapeLabel(backend)}",target="${escapeLabel(key)}"`;
}

function eachTarget(router: RouterView, visit: (backend: Backend, target: TargetState, labels: string) => void): void {
  for (const backend of router.backends.values()) for (const target of backend.targets) visit(backend, target, targetLabels(backend.name, target.key));
}

/** The metrics target sources report (backend/sources/), one family per name, a sample per backend. */
function writeSourceMetrics(out: Output, sources: readonly SourceView[]): void {
  const families = new Map<string, { type: SourceMetric["type"]; help: string; samples: [string, number][] }>();
  for (const source of sources) {
    for (const [backend, status] of source.status()) {
      for (const metric of status.metrics) {
        let family = families.get(metric.name);
        if (family === undefined) families.set(metric.name, (family = { type: metric.type, help: metric.help, samples: [] }));
        family.samples.push([`backend="${escapeLabel(backend)}"`, metric.value]);
      }
    }
  }
  for (const [name, family] of families) {
    out.family(name, family.type, family.help);
    for (const [labels, value] of family.samples) out.sample(name, labels, value);
  }
}

/** By backend × target: health, sessions counted, admin state, weight, ejection, slow start. */
function writeTargets(out: Output, router: RouterView): void {
  out.family("tcprouter_target_up", "gauge", "1 when the target is healthy (takes new sessions), 0 when health checks or failed connects marked it down.");
  eachTarget(router, (_backend, target, labels) => out.sample("tcprouter_target_up", labels, target.healthy ? 1 : 0));
  out.family("tcprouter_target_sessions_active", "gauge", "Sessions counted on the target now (connecting ones included), by backend and target.");
  eachTarget(router, (_backend, target, labels) => out.sample("tcprouter_target_sessions_active", labels, target.active));
  out.family("tcprouter_target_admin_state", "gauge", "1 for the target's admin state (ready, drain, maint: set with the admin API), 0 for the others.");
  eachTarget(router, (_backend, target, labels) => {
    for (const state of ADMIN_STATES) out.sample("tcprouter_target_admin_state", `${labels},state="${state}"`, target.state === state ? 1 : 0);
  });
  out.family("tcprouter_target_weight", "gauge", "The weight the balancer uses now: the file's, or one set with the admin API (0 = no new sessions).");
  eachTarget(router, (_backend, target, labels) => out.sample("tcprouter_target_weight", labels, target.weight));
  out.family("tcprouter_target_ejected", "gauge", "1 while passive ejection (max_fails within fail_timeout) keeps the target down.");
  eachTarget(router, (_backend, target, labels) => out.sample("tcprouter_target_ejected", labels, (target.ejectedUntil ?? 0) > 0 ? 1 : 0));
  out.family("tcprouter_target_slow_start", "gauge", "1 while the target's weight ramps up after it came up (slow_start).");
  eachTarget(router, (_backend, target, labels) => out.sample("tcprouter_target_slow_start", labels, (target.slowStartUntil ?? 0) > 0 ? 1 : 0));
}

/** The router's totals: queued and dropped bytes, bandwidth-limit pauses, draining, reloads. */
function writeTotals(out: Output, router: RouterView): void {
  const snapshot = router.stats();
  out.family("tcprouter_queued_bytes", "gauge", "Bytes queued in pipes now, waiting for a slow reader.");
  out.sample("tcprouter_queued_bytes", "", snapshot.queuedBytes);
  out.family("tcprouter_dropped_bytes_total", "counter", "Bytes that could not be delivered because their destination was gone.");
  out.sample("tcprouter_dropped_bytes_total", "", snapshot.droppedBytes);
  out.family(
    "tcprouter_rate_limited_pauses_total",
    "counter",
    'Times a pipe paused its reading socket for a bandwidth limit (upload_rate, download_rate, _per_ip), by direction ("up": client → upstream); in this process.',
  );
  out.family(
    "tcprouter_rate_limited_seconds_total",
    "counter",
    "Seconds pipes spent paused for bandwidth limits, summed over sessions, by direction; in this process.",
  );
  for (const direction of ["up", "down"] as const) {
    out.sample("tcprouter_rate_limited_pauses_total", `direction="${direction}"`, rateStats[direction].pauses);
    out.sample("tcprouter_rate_limited_seconds_total", `direction="${direction}"`, rateStats[direction].waitedMs / 1000);
  }
  out.family("tcprouter_draining", "gauge", "1 once stop() began: listeners are closed and open sessions are draining.");
  out.sample("tcprouter_draining", "", router.draining ? 1 : 0);
  out.family("tcprouter_reloads_total", "counter", "Config reloads since start.");
  out.sample("tcprouter_reloads_total", "", router.reloads);
}
