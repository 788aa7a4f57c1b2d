/**
 * The router owns the listeners, the backends and every open session: it counts them, sweeps
 * idle ones and drains them on stop. A listener's options come from its config through
 * listener-options.ts; `createRouter(config)` (create-router.ts) runs a whole config and
 * returns the handle, `forward({ listen, to })` (forward.ts) is the one-route form.
 */
import { formatAddress } from "../util/address.ts";
import { Backend, type TargetState } from "../backend/backend.ts";
import type { Config } from "../config/types.ts";
import { createSources } from "../backend/sources/all.ts";
import { expandTargets, type TargetSource } from "../backend/sources/source.ts";
import { sessionCapacity } from "../util/fd-limit.ts";
import { Listener } from "./listener.ts";
import type { Counters, RouterContext } from "./context.ts";
import type { InheritedListener } from "./handover-record.ts";
import { DefaultRoute } from "./route.ts";
import { keptCertificates, listenerOptions } from "./listener-options.ts";
import { tickFor } from "./timers.ts";
import { event, type Logger } from "../util/log.ts";
import type { CloseReason, Limits, ReloadSummary, RouterView, SessionObserver, Stats, StopSummary } from "./handle.ts";
import type { Session } from "./session.ts";
import { SessionList } from "./session-list.ts";
import { UdpListeners, type UdpPlan } from "./udp/udp-listeners.ts";

export class Router implements RouterContext, RouterView {
  readonly sessions = new SessionList<Session>();
  readonly counters: Counters = {
    totalSessions: 0,
    bytesUp: 0,
    bytesDown: 0,
    connectFailures: 0,
    noTarget: 0,
    refused: 0,
    denied: 0,
    droppedBytes: 0,
    reloads: 0,
    targetDown: 0,
  };
  listeners: Listener[] = [];
  backends = new Map<string, Backend>();
  observers: SessionObserver[] = [];
  /** Sessions the open file limit leaves room for; 0 = unknown (no cap). */
  readonly capacity = sessionCapacity();
  draining = false;
  /** Sessions in their TLS handshake or preface now. */
  prefacing = 0;
  /** Listening sockets to adopt instead of binding (RouterOptions.inherited), by formatted address. */
  inherited = new Map<string, InheritedListener>();
  reusePort = false;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private onEmpty: (() => void) | null = null;
  /** Where the live config's targets come from besides their lists (backend/sources/all.ts). */
  readonly sources: readonly TargetSource[];
  /** The `protocol = "udp"` listeners and their flows (udp/udp-listeners.ts). */
  readonly udp: UdpListeners = new UdpListeners(this);

  constructor(
    public drainTimeout: number,
    readonly limits: Limits,
    readonly log: Logger,
  ) {
    this.sources = createSources(log);
  }

  /** Opens every listener and backend of a config; on a bind error closes what it opened and throws. */
  async start(config: Config): Promise<void> {
    try {
      // every target source looks up what the config needs (names, primaries) before listening
      await Promise.all(this.sources.map((source) => source.prefetch(config)));
      this.reload(config);
    } catch (error) {
      await this.stop(0);
      throw error;
    }
  }

  /**
   * Makes `config` the live config, all at once (nothing here awaits, so no connection is
   * accepted halfway). Listeners are matched by listen address: a kept one keeps its socket,
   * so no connection is refused; a new one is bound first, and if any bind fails nothing
   * changes. Backends are matched by name: targets that stay keep their state.
   */
  reload(config: Config): ReloadSummary {
    // UDP listeners are bound first and committed with the TCP ones (udp/udp-listeners.ts).
    const udp: UdpPlan = this.udp.prepare(config);
    config = { ...config, listeners: config.listeners.filter((listener) => listener.protocol !== "udp") };
    const current = new Map(this.listeners.map((listener) => [formatAddress(listener.options.address), listener]));
    const wanted = new Set(config.listeners.map((listener) => formatAddress(listener.listen)));
    const opened: Listener[] = [];
    const next: Listener[] = [];
    const placeholder = new DefaultRoute(null);
    const certificates = keptCertificates(config, current);
    const renewed: string[] = [];
    try {
      for (const options of config.listeners) {
        const existing = current.get(formatAddress(options.listen));
        if (existing !== undefined) {
          next.push(existing);
          continue;
        }
        // The route is a placeholder until the backends below exist; no callback runs before.
        const listener = new Listener(this, { ...listenerOptions(options, new Map()), route: placeholder });
        listener.open();
        opened.push(listener);
        next.push(listener);
      }
    } catch (error) {
      for (const listener of opened) listener.close();
      this.udp.abort(udp);
      throw error;
    }
    const backends = new Map<string, Backend>();
    for (const options of config.backends.values()) {
      const targets = expandTargets(this.sources, options.targets, options);
      const backend = new Backend({ ...options, targets, queueTimeout: config.defaults.queueTimeout }, this.log, this.backends.get(options.name));
      backend.closeSessions = (target, why) => this.closeTargetSessions(backend, target, why);
      backends.set(options.name, backend);
    }
    for (const [name, backend] of this.backends) if (!backends.has(name)) backend.stop();
    for (const [index, listener] of next.entries()) {
      listener.configure(listenerOptions(config.listeners[index]!, backends));
      const loaded = certificates.get(listener);
      if (loaded !== undefined && listener.useCertificates(loaded)) renewed.push(formatAddress(listener.address));
    }
    const closed = [...current].filter(([key]) => !wanted.has(key));
    for (const [, listener] of closed) listener.close();
    const kept = next.filter((listener) => !opened.includes(listener));
    this.listeners = next;
    this.backends = backends;
    for (const source of this.sources) source.update(config, backends);
    this.drainTimeout = config.defaults.drainTimeout;
    this.startSweep();
    const flows = this.udp.commit(udp, backends);
    return {
      opened: [...opened.map((l) => formatAddress(l.address)), ...flows.opened],
      closed: [...closed.map(([key]) => key), ...flows.closed],
      kept: [...kept.map((l) => formatAddress(l.address)), ...flows.kept],
      certificates: renewed,
    };
  }

  /** (Re)starts the session clock at a tick fine enough for the shortest timeout in use (timers.ts). */
  startSweep(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    const tick = tickFor(this.listeners);
    if (tick === 0) return;
    this.sweepTimer = setInterval(sweepSessions, tick, this);
    this.sweepTimer.unref();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get reloads(): number {
    return this.counters.reloads;
  }

  observe(observer: SessionObserver): () => void {
    if (!this.observers.includes(observer)) this.observers = [...this.observers, observer];
    return () => {
      this.observers = this.observers.filter((o) => o !== observer);
    };
  }

  sessionOpened(session: Session): void {
    this.sessions.add(session);
    this.counters.totalSessions++;
  }

  sessionClosed(session: Session): void {
    this.sessions.delete(session);
    this.counters.bytesUp += session.up.bytes;
    this.counters.bytesDown += session.down.bytes;
    for (const observer of this.observers) observer.closed?.(session);
    if (this.sessions.size === 0 && this.udp.flowCount === 0) this.onEmpty?.();
  }

  /** The UDP listeners, as observers see them. */
  get udpListeners() {
    return this.udp.listeners;
  }

  /** The last UDP flow of a draining router ended. */
  flowsEnded(): void {
    if (this.sessions.size === 0) this.onEmpty?.();
  }

  /**
   * Closes the sessions connected to `target` (reason target_down: health on_down, a Sentinel
   * switch, on_up for backups), counts them, logs one line; returns how many.
   */
  closeTargetSessions(backend: Backend, target: TargetState, why: string): number {
    const on: Session[] = [];
    for (const session of this.sessions) if (session.target === target) on.push(session);
    for (const session of on) session.close("target_down", why);
    this.counters.targetDown += on.length;
    const flows = this.udp.closeOn(target, "target_down", why);
    if (on.length > 0 || flows > 0) {
      const what = flows === 0 ? `${on.length} ${on.length === 1 ? "session" : "sessions"}` : `${on.length} sessions and ${flows} UDP flows`;
      const message = `backend ${backend.name}: closed ${what} on ${target.key}: ${why}`;
      this.log.info(event(message, { backend: backend.name, target: target.key, reason: "target_down", detail: why, sessions: on.length, flows }));
    }
    return on.length + flows;
  }

  /** The control API's maint with close (reason target_maint), or a target source's switch (target_down). */
  closeSessions(target: TargetState, reason: Extract<CloseReason, "target_down" | "target_maint">, why: string): number {
    if (reason === "target_down") {
      for (const backend of this.backends.values()) if (backend.targets.includes(target)) return this.closeTargetSessions(backend, target, why);
      return 0;
    }
    const on = [...this.sessions].filter((session) => session.target === target);
    for (const session of on) session.close(reason, why);
    return on.length + this.udp.closeOn(target, reason, why);
  }

  /** One tick of the session clock: each session checks its timers (Session.tick). */
  sweep(): void {
    const now = Date.now();
    const clock = performance.now();
    // A session may close itself in tick (and leave the list): take the next one first.
    for (let session = this.sessions.first; session !== null; ) {
      const next: Session | null = session.listNext;
      session.tick(now, clock);
      session = next;
    }
  }

  stats(): Stats {
    let bytesUp = this.counters.bytesUp;
    let bytesDown = this.counters.bytesDown;
    let queuedBytes = 0;
    for (const session of this.sessions) {
      bytesUp += session.up.bytes;
      bytesDown += session.down.bytes;
      queuedBytes += session.up.queued + session.down.queued;
    }
    const { totalSessions, connectFailures, noTarget, refused, denied, droppedBytes, targetDown } = this.counters;
    return {
      activeSessions: this.sessions.size,
      totalSessions,
      bytesUp,
      bytesDown,
      connectFailures,
      noTarget,
      refused,
      denied,
      queuedBytes,
      droppedBytes,
      targetDown,
    };
  }

  async stop(drainTimeout = this.drainTimeout): Promise<StopSummary> {
    const started = Date.now();
    this.draining = true;
    for (const listener of this.listeners) listener.close();
    this.udp.drain(); // UDP sockets stay open while flows drain: replies go out through them
    const before = this.sessions.size + this.udp.flowCount;
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
    const closed = this.sessions.size + this.udp.flowCount;
    for (const session of this.sessions) session.close("drained");
    this.udp.stop();
    clearInterval(this.sweepTimer);
    for (const backend of this.backends.values()) backend.stop();
    for (const source of this.sources) source.stop();
    return { drained: before - closed, closed, durationMs: Date.now() - started };
  }
}

function sweepSessions(router: Router): void {
  router.sweep();
}
