/**
 * Active health checks of a backend's targets, like HAProxy's `check`.
 *
 * Every `interval` ms each target gets one probe: a TCP (or unix socket) connection that must
 * finish within `timeout` ms. With neither `send` nor `expect`, a probe passes once it has
 * connected. With `send`, those bytes are written once connected; without `expect` the probe
 * passes once they are all written. With `expect`, the reply must start with those bytes: they
 * are compared as they arrive (across any number of reads), a byte that differs fails the
 * probe at once, and bytes past `expect.length` are ignored. Every probe closes its socket.
 *
 * Targets start healthy, so traffic flows at start before any check has run (as in HAProxy).
 * `fall` consecutive failed checks mark a healthy target down, `rise` consecutive passed
 * checks mark a down target up; each transition is logged once at info. A session that failed
 * to connect counts as one failed check (`reportFailure`).
 *
 * The checker owns its timers and probe sockets and closes them; the target objects belong to
 * the backend, the checker only writes their `healthy` field.
 */
import type { Socket, SocketHandler } from "bun";
import { formatAddress, type Address } from "../util/address.ts";
import type { HealthConfig } from "../config/types.ts";
import { DEBUG, event, type Logger } from "../util/log.ts";

export type { HealthConfig };

/** The target object is owned by the backend; the checker sets `healthy`. */
export interface CheckedTarget {
  readonly address: Address;
  readonly key: string;
  healthy: boolean;
}

export class HealthChecker {
  /** Called when a target is marked up (the backend lets waiting sessions in). */
  onUp: (() => void) | null = null;
  readonly config: HealthConfig;
  private readonly states = new Map<string, TargetState>();
  private stopped = false;

  constructor(
    readonly backendName: string,
    config: HealthConfig,
    readonly log: Logger,
  ) {
    const where = `backend ${backendName}: health check`;
    if (!(config.interval > 0 && Number.isFinite(config.interval))) throw new RangeError(`${where} interval must be > 0 ms (got ${config.interval})`);
    if (!(config.timeout > 0 && Number.isFinite(config.timeout))) throw new RangeError(`${where} timeout must be > 0 ms (got ${config.timeout})`);
    if (!(Number.isInteger(config.rise) && config.rise >= 1)) throw new RangeError(`${where} rise must be a whole number >= 1 (got ${config.rise})`);
    if (!(Number.isInteger(config.fall) && config.fall >= 1)) throw new RangeError(`${where} fall must be a whole number >= 1 (got ${config.fall})`);
    this.config = {
      ...config,
      send: config.send !== null && config.send.length > 0 ? config.send : null,
      expect: config.expect !== null && config.expect.length > 0 ? config.expect : null,
    };
  }

  /**
   * Starts checking these targets, replacing the previous set. A target whose key was already
   * checked keeps its state (healthy or not, and the count towards the next transition), even
   * if it is a new object; new keys start healthy, first checked at a random point within one
   * interval so checks spread out. Removed keys stop being checked (an open probe is closed).
   * Of two targets with the same key, the first is checked. Ignored after `stop()`.
   */
  setTargets(targets: readonly CheckedTarget[]): void {
    if (this.stopped) return;
    const previous = new Map(this.states);
    this.states.clear();
    for (const target of targets) {
      if (this.states.has(target.key)) continue;
      const kept = previous.get(target.key);
      if (kept !== undefined) {
        previous.delete(target.key);
        if (kept.target !== target) target.healthy = kept.target.healthy;
        kept.target = target;
        this.states.set(target.key, kept);
      } else {
        target.healthy = true;
        this.states.set(target.key, new TargetState(this, target));
      }
    }
    for (const removed of previous.values()) removed.stop();
  }

  /** Passive check: a real session failed to connect to this target: counts as one failed check. Unknown targets are ignored. */
  reportFailure(target: CheckedTarget): void {
    const state = this.states.get(target.key);
    if (state !== undefined) this.record(state, false, "a session failed to connect");
  }

  /** Stops all timers and closes all probe sockets. Final. A connect still pending is closed as soon as it completes or fails. */
  stop(): void {
    this.stopped = true;
    for (const state of this.states.values()) state.stop();
    this.states.clear();
  }

  /** @internal Counts one check result and flips `healthy` after `fall` failures or `rise` passes in a row. */
  record(state: TargetState, passed: boolean, reason: string): void {
    const target = state.target;
    if (!passed && this.log.level >= DEBUG) {
      this.log.debug(`backend ${this.backendName}: check of target ${formatAddress(target.address)} failed: ${reason}`);
    }
    if (passed === target.healthy) {
      state.count = 0;
      return;
    }
    state.count++;
    const needed = target.healthy ? this.config.fall : this.config.rise;
    if (state.count < needed) return;
    state.count = 0;
    target.healthy = passed;
    const name = `backend ${this.backendName}: target ${formatAddress(target.address)}`;
    const fields = { backend: this.backendName, target: formatAddress(target.address), health: passed ? "up" : "down", checks: needed };
    if (passed) this.log.info(event(`${name} is up (${needed} passed ${needed === 1 ? "check" : "checks"})`, fields));
    else this.log.info(event(`${name} is down (${needed} failed ${needed === 1 ? "check" : "checks"}: ${reason})`, { ...fields, reason }));
    if (passed) this.onUp?.();
  }
}

/** One checked target: its timer, its probe in flight, and the count towards its next transition. */
class TargetState {
  /** Consecutive results against the current state: failures while healthy, passes while down. */
  count = 0;
  probe: Probe | null = null;
  private timer: ReturnType<typeof setTimeout>;

  constructor(
    readonly checker: HealthChecker,
    public target: CheckedTarget,
  ) {
    this.timer = setTimeout(firstTick, Math.random() * checker.config.interval, this);
    this.timer.unref();
  }

  startTicking(): void {
    this.timer = setInterval(tick, this.checker.config.interval, this);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    clearInterval(this.timer);
    const probe = this.probe;
    this.probe = null;
    if (probe !== null) cancel(probe);
  }
}

/** One check: a connection, the bytes still to send, and how much of `expect` has matched. */
class Probe {
  socket: Socket<Probe> | null = null;
  done = false;
  unsent: Uint8Array | null = null;
  matched = 0;
  deadline: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly state: TargetState) {}
}

function firstTick(state: TargetState): void {
  state.startTicking();
  tick(state);
}

/** Starts a probe unless the previous one is still in flight (then this tick is skipped). */
function tick(state: TargetState): void {
  if (state.probe !== null) return;
  const probe = new Probe(state);
  state.probe = probe;
  probe.deadline = setTimeout(probeTimedOut, state.checker.config.timeout, probe);
  probe.deadline.unref();
  const address = state.target.address;
  try {
    const pending =
      address.kind === "unix"
        ? Bun.connect({ unix: address.path, socket: probeHandlers, data: probe })
        : Bun.connect({ hostname: address.host, port: address.port, socket: probeHandlers, data: probe });
    // connectError reports most failures; this also covers any that only reject.
    pending.then(undefined, (error: unknown) => finish(probe, false, connectFailure(error)));
  } catch (error) {
    finish(probe, false, connectFailure(error));
  }
}

function probeTimedOut(probe: Probe): void {
  finish(probe, false, "timeout");
}

/** Ends a probe once: closes its socket and hands the result to the checker. */
function finish(probe: Probe, passed: boolean, reason: string): void {
  if (probe.done) return;
  close(probe, passed);
  const state = probe.state;
  if (state.probe !== probe) return;
  state.probe = null;
  state.checker.record(state, passed, reason);
}

/** Ends a probe without a result (target removed or checker stopped). */
function cancel(probe: Probe): void {
  if (!probe.done) close(probe, false);
}

function close(probe: Probe, gracefully: boolean): void {
  probe.done = true;
  clearTimeout(probe.deadline);
  const socket = probe.socket;
  probe.socket = null;
  probe.unsent = null;
  if (socket === null) return;
  if (gracefully) socket.end();
  else socket.terminate();
}

/** Writes what is left of `send`; passes the probe if that was all it had to do. */
function flush(probe: Probe, socket: Socket<Probe>): void {
  const unsent = probe.unsent;
  if (unsent === null) return;
  const written = socket.write(unsent);
  if (written < 0) return finish(probe, false, "closed before reply");
  probe.unsent = written < unsent.length ? unsent.subarray(written) : null;
  if (probe.unsent === null && probe.state.checker.config.expect === null) finish(probe, true, "");
}

function connectFailure(error: unknown): string {
  const code = errorCode(error);
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ETIMEDOUT") return "timeout";
  return `connect failed (${code})`;
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
}

/** Handlers of probe sockets. Each checks `done` first: a probe may end before its socket does. */
const probeHandlers: SocketHandler<Probe> = {
  open(socket) {
    const probe = socket.data;
    if (probe.done) return void socket.terminate(); // opened after its deadline, or cancelled
    probe.socket = socket;
    const config = probe.state.checker.config;
    if (config.send !== null) {
      probe.unsent = config.send;
      flush(probe, socket);
    } else if (config.expect === null) {
      finish(probe, true, "");
    }
  },
  data(socket, chunk) {
    const probe = socket.data;
    const expect = probe.state.checker.config.expect;
    if (probe.done || expect === null) return;
    const n = Math.min(chunk.length, expect.length - probe.matched);
    for (let i = 0; i < n; i++) {
      if (chunk[i] !== expect[probe.matched + i]) return finish(probe, false, "unexpected reply");
    }
    probe.matched += n;
    if (probe.matched === expect.length) finish(probe, true, "");
  },
  drain(socket) {
    const probe = socket.data;
    if (!probe.done) flush(probe, socket);
  },
  close(socket) {
    const probe = socket.data;
    if (!probe.done) finish(probe, false, "closed before reply");
  },
  connectError(socket, error) {
    const probe = socket.data as Probe | undefined;
    if (probe !== undefined) finish(probe, false, connectFailure(error));
  },
  error(socket, error) {
    const probe = socket.data as Probe | undefined;
    if (probe !== undefined) finish(probe, false, `socket error (${errorCode(error)})`);
  },
};
