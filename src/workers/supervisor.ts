/**
 * Workers: N copies of `serve` on the same listeners. The supervisor binds each listener once
 * (bind.ts) and passes the sockets to every worker at stdio 3, 4, …; the workers accept from the
 * same sockets, so a worker that dies loses nothing from the accept queue. It starts the
 * workers, restarts one that dies (with the same sockets), and passes SIGINT/SIGTERM (and
 * SIGHUP, SIGUSR1) on; it exits once every worker has exited. A listener a reload adds is bound
 * by each worker with SO_REUSEPORT.
 *
 * A worker says it is ready (over the IPC channel) once its listeners are bound. A worker that
 * exits before it was ever ready (a port taken by another program, a certificate it cannot
 * read) would fail the same way on every restart: the supervisor stops the others and exits 1
 * instead of restarting it forever.
 *
 * A worker is this same program (the script under `bun`, or the compiled binary) started with
 * TCPROUTER_WORKER set; a worker never starts workers of its own.
 */
import { availableParallelism } from "node:os";
import { rmSync } from "node:fs";
import type { Address } from "../util/address.ts";
import { event, type Logger } from "../util/log.ts";
import type { AdminAuth } from "../observe/control.ts";
import { startSupervisorAdmin, WORKER_ADMIN_ENV, workerAdminPath, type SupervisorAdmin } from "./admin.ts";
import type { HandoverApi, InheritedListener } from "../proxy/handover-record.ts";
import * as systemd from "../util/systemd.ts";
import type { HeldSignals } from "../util/signals.ts";
import { type Takeover, upgrade } from "./upgrade.ts";
import { programCommand } from "./program.ts";
import { LISTENERS_ENV } from "./activation.ts";

export const WORKER_ENV = "TCPROUTER_WORKER";

/** This process is a worker started by a supervisor. */
export function isWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined;
}

const READY = "ready";

/** In a worker: tell the supervisor the listeners are bound. */
export function reportReady(): void {
  try {
    process.send?.(READY);
  } catch {
    // The supervisor is gone already: exitWithSupervisor notices and drains this worker.
  }
}

/** `auto` = one per core; otherwise a whole number ≥ 1. Throws a one-line message. */
export function parseWorkers(value: string): number {
  if (value === "auto") return availableParallelism();
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new Error(`--workers: "${value}" is not a whole number ≥ 1 (or auto)`);
  return Number(value);
}

/** Restarts within this long of a start count as a crash loop and are delayed. */
const CRASH_WINDOW_MS = 1000;
const RESTART_DELAY_MS = 1000;

/** What a supervisor runs with, besides its worker count. */
export interface SupervisorOptions {
  /** The program's own arguments, given to every worker (and to the new version in an upgrade). */
  args: string[];
  log: Logger;
  /** Serve the admin endpoints there, merged from every worker's (workers/admin.ts); null = none. */
  admin?: Address | null;
  /** The control API's token. */
  auth?: AdminAuth;
  /** The listening sockets it holds for its workers (bind.ts). */
  listeners?: InheritedListener[];
  /** In an upgrade's new supervisor: the old one's handover, answered once every worker is ready. */
  takeover?: Takeover | null;
  /** SIGUSR2: how long a new supervisor may take to be ready. */
  upgradeTimeout?: number;
  /** Signals that came while starting (util/signals.ts), handed over once the supervisor's handlers are on. */
  early?: HeldSignals;
}

/** Starts `count` workers and supervises them until they have all exited; never returns. */
export async function supervise(count: number, options: SupervisorOptions): Promise<never> {
  new Supervisor(count, options).run();
  return await new Promise<never>(() => {});
}

class Supervisor {
  private readonly command: string[];
  private readonly log: Logger;
  private readonly admin: Address | null;
  private readonly listeners: InheritedListener[];
  /**
   * `ready`: this start of the worker has said it is ready (its signal handlers, or its holding
   * of signals, are on); `pending`: SIGHUP/SIGUSR1 that came before, sent once it is.
   */
  private readonly workers = new Map<number, { proc: Bun.Subprocess; started: number; ready: boolean; pending: NodeJS.Signals[] }>();
  /** Indexes whose worker has been ready once: a later start that fails is retried, not fatal. */
  private readonly everReady = new Set<number>();
  private stopping: NodeJS.Signals | "failed" | null = null;
  private restarts = 0;
  private server: SupervisorAdmin | null = null;
  private takeover: Takeover | null;

  constructor(
    private readonly count: number,
    private readonly options: SupervisorOptions,
  ) {
    this.command = programCommand(options.args);
    this.log = options.log;
    this.admin = options.admin ?? null;
    this.listeners = options.listeners ?? [];
    this.takeover = options.takeover ?? null;
  }

  run(): void {
    // An upgrade's new supervisor opens its admin once the old one has closed its own.
    if (this.takeover === null) this.openAdmin();
    process.on("SIGINT", () => this.stop("SIGINT"));
    process.on("SIGTERM", () => this.stop("SIGTERM"));
    process.on("SIGUSR2", () => this.upgrade());
    for (const signal of ["SIGHUP", "SIGUSR1"] as const) process.on(signal, () => this.signalWorkers(signal, { whenReady: true }));
    for (let index = 1; index <= this.count; index++) this.start(index);
    this.options.early?.release();
    const pids = [...this.workers.values()].map((w) => w.proc.pid);
    this.log.info(event(`started ${this.count} workers (pids ${pids.join(", ")})`, { workers: this.count, pids }));
  }

  private socket(index: number): string {
    return workerAdminPath(process.pid, index);
  }

  private openAdmin(): void {
    if (this.admin === null) return;
    const auth = this.options.auth;
    this.server = startSupervisorAdmin({
      listen: this.admin,
      count: this.count,
      workers: () => [...this.workers.entries()].map(([index, { proc }]) => ({ index, pid: proc.pid, socket: this.socket(index) })),
      restarts: () => this.restarts,
      stopping: () => this.stopping !== null,
      logger: this.log,
      ...(auth !== undefined ? { auth } : {}),
    });
    const changes = auth?.token ? "changes with the token" : "read-only: no token";
    this.log.info(`admin on ${this.server.url} (/metrics, /healthz, /readyz, /status, /api: ${changes}), merged from the workers`);
  }

  /** Starts worker `index`: this program with the same arguments, the listening sockets at stdio 3, 4, …, their addresses in LISTENERS_ENV. */
  private start(index: number): void {
    if (this.admin !== null) rmSync(this.socket(index), { force: true });
    const stdio = ["ignore", "inherit", "inherit", ...this.listeners.map((l) => l.fd)];
    const shared = JSON.stringify(this.listeners.map((listener, n) => ({ ...listener, fd: 3 + n })));
    const proc = Bun.spawn(this.command, {
      env: {
        ...process.env,
        [WORKER_ENV]: String(index),
        ...(this.admin !== null ? { [WORKER_ADMIN_ENV]: this.socket(index) } : {}),
        ...(this.listeners.length > 0 ? { [LISTENERS_ENV]: shared } : {}),
      },
      stdio: stdio as unknown as ["ignore", "inherit", "inherit"],
      onExit: (_proc, code, signal) => this.exited(index, code, signal),
      ipc: (message) => {
        if (message === READY) this.ready(index);
      },
    });
    this.workers.set(index, { proc, started: Date.now(), ready: false, pending: [] });
  }

  private ready(index: number): void {
    const worker = this.workers.get(index);
    if (worker !== undefined && !worker.ready) {
      worker.ready = true;
      for (const signal of worker.pending.splice(0)) worker.proc.kill(signal);
    }
    // A (re)started worker starts from the file: it gets the admin changes made so far.
    void this.server?.replay(index);
    this.everReady.add(index);
    // An upgrade's new supervisor is ready once all its workers are: the old one then drains.
    if (this.takeover !== null && this.everReady.size === this.count) {
      const handing = this.takeover;
      this.takeover = null;
      void handing.ready(NO_SESSIONS, this.log).then(() => {
        try {
          this.openAdmin();
        } catch (error) {
          this.log.error(`upgrade: ${(error as Error).message}`);
        }
        systemd.mainPid(process.pid);
        systemd.ready();
        this.log.info(event(`upgrade: took over the listeners with ${this.count} new workers`, { workers: this.count }));
      });
    }
  }

  private exited(index: number, code: number | null, signal: number | NodeJS.Signals | null): void {
    const worker = this.workers.get(index);
    this.workers.delete(index);
    if (this.admin !== null) rmSync(this.socket(index), { force: true }); // a worker killed with SIGKILL leaves it
    if (this.stopping !== null) {
      if (this.workers.size === 0) {
        if (this.stopping === "failed") process.exit(1);
        this.log.info(event(`all ${this.count} workers stopped`, { workers: this.count }));
        process.exit(0);
      }
      return;
    }
    const how = signal !== null ? `signal ${signal}` : `exit code ${code}`;
    if (!this.everReady.has(index)) {
      this.log.error(event(`worker ${index} could not start (${how}): stopping`, { worker: index, exitCode: code, signal }));
      this.stopping = "failed";
      this.signalWorkers("SIGTERM");
      if (this.workers.size === 0) process.exit(1);
      return;
    }
    const crashLoop = worker !== undefined && Date.now() - worker.started < CRASH_WINDOW_MS;
    this.log.warn(
      event(`worker ${index} (pid ${worker?.proc.pid}) died (${how}); restarting${crashLoop ? ` in ${RESTART_DELAY_MS} ms` : ""}`, {
        worker: index,
        pid: worker?.proc.pid ?? null,
        exitCode: code,
        signal,
        restartDelayMs: crashLoop ? RESTART_DELAY_MS : 0,
      }),
    );
    this.restarts++;
    if (crashLoop) setTimeout(() => this.stopping === null && this.start(index), RESTART_DELAY_MS);
    else this.start(index);
  }

  /**
   * `whenReady`: a worker still starting gets the signal once it says it is ready (before it
   * holds signals, SIGHUP or SIGUSR1 would kill it); it may have read the config file already.
   */
  private signalWorkers(signal: NodeJS.Signals, { whenReady = false } = {}): void {
    for (const worker of this.workers.values()) {
      if (worker.ready || !whenReady) worker.proc.kill(signal);
      else if (!worker.pending.includes(signal)) worker.pending.push(signal);
    }
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.stopping === "failed") return;
    if (this.stopping !== null) {
      this.log.warn(`${signal} again: killing the workers`);
      this.signalWorkers("SIGKILL");
      process.exit(1);
    }
    this.stopping = signal;
    this.log.info(event(`${signal}: stopping ${this.workers.size} workers`, { signal, workers: this.workers.size }));
    this.signalWorkers(signal);
    if (this.workers.size === 0) process.exit(0);
  }

  /**
   * SIGUSR2: a new supervisor (the program at its path) takes the listening sockets and starts
   * its own workers; once they are ready, these workers stop accepting and drain (sessions of
   * workers do not move; they end within the drain timeout).
   */
  private upgrade(): void {
    if (this.stopping !== null) return;
    this.log.info("SIGUSR2: upgrading: starting the new supervisor");
    const timeout = this.options.upgradeTimeout;
    const old = {
      handover: listenersOnly(this.listeners),
      activeSessions: () => 0,
      stopAccepting() {},
      closeAdmin: () => void this.server?.stop(),
      finish: () => this.stop("SIGTERM"),
      log: this.log,
      ...(timeout !== undefined ? { readyTimeout: timeout } : {}),
    };
    upgrade(old, this.options.args).catch((error: Error) =>
      this.log.error(event(`upgrade failed: ${error.message}; this supervisor keeps serving`, { signal: "SIGUSR2" })),
    );
  }
}

/** A supervisor hands over its listening sockets only: its workers' sessions drain. */
function listenersOnly(listeners: InheritedListener[]): HandoverApi {
  return {
    listeners: () => listeners,
    stopAccepting() {},
    targets: () => ({}),
    restore() {},
    freeze: () => [],
    handedOff: () => 0,
    adopt() {},
  };
}

/** What a new supervisor answers with: it takes no session itself. */
const NO_SESSIONS = listenersOnly([]);
