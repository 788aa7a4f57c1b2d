/**
 * Active health checks of a backend's targets, like HAProxy's `check`.
 *
 * Every `interval` ms each target gets one probe: a TCP (or unix socket, or TLS) connection to
 * the target (or to the check's `port`/`address`) that must finish within `timeout` ms. Once
 * connected the probe runs its steps in order (see `checkSteps`): `auth` first, then the
 * `send`/`expect` shorthand, then `steps`. A send step writes its bytes; an expect step waits
 * until the reply so far matches (`matchStep`): a prefix is compared as bytes arrive and a byte
 * that differs fails at once; a substring or regex waits until it is found, the timeout or
 * the peer's close. A match consumes the whole reply it ends in (`replyEnd`: a RESP reply, a
 * text line, or the matched bytes of a binary one); the next expect step reads after it.
 * With no steps a probe passes once connected. `type = "http"` sends one HTTP request
 * instead (http-check.ts). Every probe closes its socket.
 *
 * Targets start healthy (`init = "up"`), so traffic flows at start before any check has run
 * (as in HAProxy); with `init = "down"` they carry nothing until `rise` checks passed.
 * `fall` consecutive failed checks mark a healthy target down, `rise` consecutive passed
 * checks mark a down target up; each transition is logged once at info. A session that failed
 * to connect counts as one failed check (`reportFailure`).
 *
 * The checker owns its timers and probe sockets and closes them; the target objects belong to
 * the backend, the checker only writes their `healthy` field.
 */
import type { Socket, SocketHandler } from "bun";
import { formatAddress, type Address } from "../../util/address.ts";
import type { HealthConfig, HealthStep } from "../../config/types.ts";
import { DEBUG, event, type Logger } from "../../util/log.ts";
import { checkSteps, describeStep, MAX_REPLY, matchStep, replyEnd } from "./check-steps.ts";
import { httpProbe } from "./http-check.ts";
import { udpProbe } from "./udp-check.ts";
import { errorCode, errorText, firstLine } from "../../util/errors.ts";

export type { HealthConfig, HealthStep };

/** TLS options of a check over TLS (the backend's upstream TLS). */
export interface CheckTls {
  serverName?: string;
  ca?: string;
  rejectUnauthorized: boolean;
}

/** The target object is owned by the backend; the checker sets `healthy`. */
export interface CheckedTarget {
  readonly address: Address;
  readonly key: string;
  healthy: boolean;
}

export class HealthChecker {
  /** Called when a target is marked up or down (the backend lets waiting sessions in, or closes sessions). */
  onChange: ((target: CheckedTarget, up: boolean) => void) | null = null;
  readonly config: HealthConfig;
  /** The steps each probe runs (`checkSteps`). */
  readonly steps: HealthStep[];
  private readonly states = new Map<string, TargetState>();
  private stopped = false;

  constructor(
    readonly backendName: string,
    config: HealthConfig,
    readonly log: Logger,
    /** Checks over TLS with these options (when `config.tls` is not false); null = plain TCP. */
    readonly tls: CheckTls | null = null,
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
    this.steps = checkSteps(this.config);
    if (config.tls === false) this.tls = null;
  }

  /**
   * Starts checking these targets, replacing the previous set. A target whose key was already
   * checked keeps its state (healthy or not, and the count towards the next transition), even
   * if it is a new object; new keys start as `init` says (healthy by default), first checked at a random point within one
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
        target.healthy = this.config.init !== "down";
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
    this.onChange?.(target, passed);
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

/** One check: a connection, the step it is at, the bytes still to send, and the reply not matched yet. */
export class Probe {
  socket: Socket<Probe> | null = null;
  done = false;
  step = 0;
  unsent: Uint8Array | null = null;
  reply: Buffer = Buffer.alloc(0);
  /** Where the previous expect's match ended in `reply`; its reply is consumed (`replyEnd`) before the next expect reads. */
  matched: number | null = null;
  deadline: ReturnType<typeof setTimeout> | undefined;
  /** An HTTP check's abort; null for TCP probes. */
  abort: AbortController | null = null;

  constructor(readonly state: TargetState) {}
}

/** The address a check dials: the check's `address`, or the target's with the check's `port`. */
export function checkAddress(config: HealthConfig, target: Address): Address {
  if (config.address != null) return config.address;
  if (config.port != null && target.kind === "tcp") return { ...target, port: config.port };
  return target;
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
  const checker = state.checker;
  const address = checkAddress(checker.config, state.target.address);
  if (checker.config.http != null) return httpProbe(probe, address, checker.config.http, checker.tls, finish);
  if (checker.config.udp === true) return udpProbe(probe, address, checker.steps, finish);
  const tls = checker.tls === null ? undefined : checker.tls;
  try {
    const pending =
      address.kind === "unix"
        ? Bun.connect({ unix: address.path, socket: probeHandlers, data: probe, tls })
        : Bun.connect({ hostname: address.host, port: address.port, socket: probeHandlers, data: probe, tls });
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
export function finish(probe: Probe, passed: boolean, reason: string): void {
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
  probe.abort?.abort();
  probe.abort = null;
  const socket = probe.socket;
  probe.socket = null;
  probe.unsent = null;
  probe.reply = EMPTY;
  if (socket === null) return;
  if (gracefully) socket.end();
  else socket.terminate();
}

const EMPTY = Buffer.alloc(0);

/**
 * Runs steps from the current one until one has to wait (bytes the kernel did not take, or a
 * reply not matched yet); passes the probe after the last step, fails it on a mismatch.
 */
function advance(probe: Probe, socket: Socket<Probe>): void {
  const steps = probe.state.checker.steps;
  while (!probe.done) {
    if (probe.unsent !== null) {
      const unsent = probe.unsent;
      const written = socket.write(unsent);
      if (written < 0) return finish(probe, false, "closed before reply");
      probe.unsent = written < unsent.length ? unsent.subarray(written) : null;
      if (probe.unsent !== null) return; // the rest on drain
      probe.step++;
      continue;
    }
    const step = steps[probe.step];
    if (step === undefined) return finish(probe, true, "");
    if ("send" in step) {
      probe.unsent = step.send;
      continue;
    }
    if (probe.matched !== null) {
      const end = replyEnd(probe.reply, probe.matched);
      if (end === "more") {
        if (probe.reply.length >= MAX_REPLY) return finish(probe, false, `no end of reply in ${MAX_REPLY} bytes (before ${describeStep(step)})`);
        return;
      }
      probe.reply = probe.reply.subarray(end);
      probe.matched = null;
    }
    const result = matchStep(step, probe.reply);
    if (result === "fail") return finish(probe, false, `unexpected reply (expected ${describeStep(step)})`);
    if (result === "more") {
      if (probe.reply.length >= MAX_REPLY) return finish(probe, false, `no match in ${MAX_REPLY} bytes (expected ${describeStep(step)})`);
      return;
    }
    probe.matched = result;
    probe.step++;
  }
}

function connectFailure(error: unknown): string {
  const code = errorCode(error);
  if (code === "ECONNREFUSED" || code === "ETIMEDOUT") return errorText(error);
  return `connect failed (${code ?? firstLine(error)})`;
}

/** Handlers of probe sockets. Each checks `done` first: a probe may end before its socket does. */
const probeHandlers: SocketHandler<Probe, "buffer"> = {
  binaryType: "buffer",
  open(socket) {
    const probe = socket.data;
    if (probe.done) return void socket.terminate(); // opened after its deadline, or cancelled
    probe.socket = socket;
    const tls = probe.state.checker.tls;
    if (tls?.rejectUnauthorized && socket.authorized === false) {
      return finish(probe, false, `TLS: ${socket.getAuthorizationError()?.message ?? "certificate did not verify"}`);
    }
    advance(probe, socket);
  },
  data(socket, chunk) {
    const probe = socket.data;
    if (probe.done) return;
    if (probe.state.checker.steps[probe.step] === undefined) return;
    probe.reply = probe.reply.length === 0 ? chunk : Buffer.concat([probe.reply, chunk]);
    advance(probe, socket);
  },
  drain(socket) {
    const probe = socket.data;
    if (!probe.done) advance(probe, socket);
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

/** Two check configs that probe alike (a reload keeps the checker, and its counts, when they do). */
export function sameChecks(a: HealthConfig | null, b: HealthConfig | null): boolean {
  if (a === null || b === null) return a === b;
  return checkIdentity(a) === checkIdentity(b) && (a.auth?.password.reveal() ?? "") === (b.auth?.password.reveal() ?? "");
}

function checkIdentity(config: HealthConfig): string {
  const steps = checkSteps({ ...config, auth: null }).map(describeStep);
  const address = config.address == null ? "" : formatAddress(config.address);
  const { interval, timeout, rise, fall, port, init, onDown, onUp, http, tls } = config;
  return JSON.stringify([
    interval,
    timeout,
    rise,
    fall,
    steps,
    config.auth?.username ?? null,
    !!config.auth,
    port ?? null,
    address,
    init,
    onDown,
    onUp,
    http ?? null,
    tls,
    config.udp ?? false,
  ]);
}
