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

/**
 * `admin`: serve the admin endpoints there, merged from every worker's (workers/admin.ts), with
 * `auth` for the control API.
 */
export async function supervise(
  count: number,
  args: string[],
  log: Logger,
  admin: Address | null = null,
  auth?: AdminAuth,
  listeners: InheritedListener[] = [],
  takeover: Takeover | null = null,
  upgradeTimeout?: number,
): Promise<never> {
  const command = programCommand(args);
  // Each worker finds the sockets at stdio 3, 4, … and their addresses in LISTENERS_ENV.
  const stdio = ["ignore", "inherit", "inherit", ...listeners.map((l) => l.fd)] as const;
  const shared = JSON.stringify(listeners.map((listener, n) => ({ ...listener, fd: 3 + n })));
  const workers = new Map<number, { proc: Bun.Subprocess; started: number }>();
  /** Indexes whose worker has been ready once: a later start that fails is retried, not fatal. */
  const everReady = new Set<number>();
  let stopping: NodeJS.Signals | "failed" | null = null;
  let restarts = 0;
  const socket = (index: number) => workerAdminPath(process.pid, index);
  let server: SupervisorAdmin | null = null;
  const openAdmin = () => {
    if (admin === null) return;
    server = startSupervisorAdmin({
      listen: admin,
      count,
      workers: () => [...workers.entries()].map(([index, { proc }]) => ({ index, pid: proc.pid, socket: socket(index) })),
      restarts: () => restarts,
      stopping: () => stopping !== null,
      logger: log,
      ...(auth !== undefined ? { auth } : {}),
    });
    const changes = auth?.token ? "changes with the token" : "read-only: no token";
    log.info(`admin on ${server.url} (/metrics, /healthz, /readyz, /status, /api: ${changes}), merged from the workers`);
  };
  // An upgrade's new supervisor opens its admin once the old one has closed its own.
  if (takeover === null) openAdmin();

  const start = (index: number) => {
    if (admin !== null) rmSync(socket(index), { force: true });
    const proc = Bun.spawn(command, {
      env: {
        ...process.env,
        [WORKER_ENV]: String(index),
        ...(admin !== null ? { [WORKER_ADMIN_ENV]: socket(index) } : {}),
        ...(listeners.length > 0 ? { [LISTENERS_ENV]: shared } : {}),
      },
      stdio: stdio as unknown as ["ignore", "inherit", "inherit"],
      onExit: (_proc, code, signal) => exited(index, code, signal),
      ipc: (message) => {
        if (message !== READY) return;
        // A (re)started worker starts from the file: it gets the admin changes made so far.
        void server?.replay(index);
        everReady.add(index);
        // An upgrade's new supervisor is ready once all its workers are: the old one then drains.
        if (takeover !== null && everReady.size === count) {
          const handing = takeover;
          takeover = null;
          void handing.ready(NO_SESSIONS, log).then(() => {
            try {
              openAdmin();
            } catch (error) {
              log.error(`upgrade: ${(error as Error).message}`);
            }
            systemd.mainPid(process.pid);
            systemd.ready();
            log.info(event(`upgrade: took over the listeners with ${count} new workers`, { workers: count }));
          });
        }
      },
    });
    workers.set(index, { proc, started: Date.now() });
  };

  const exited = (index: number, code: number | null, signal: number | NodeJS.Signals | null) => {
    const worker = workers.get(index);
    workers.delete(index);
    if (admin !== null) rmSync(socket(index), { force: true }); // a worker killed with SIGKILL leaves it
    if (stopping !== null) {
      if (workers.size === 0) {
        if (stopping === "failed") process.exit(1);
        log.info(event(`all ${count} workers stopped`, { workers: count }));
        process.exit(0);
      }
      return;
    }
    const how = signal !== null ? `signal ${signal}` : `exit code ${code}`;
    if (!everReady.has(index)) {
      log.error(event(`worker ${index} could not start (${how}): stopping`, { worker: index, exitCode: code, signal }));
      stopping = "failed";
      for (const { proc } of workers.values()) proc.kill("SIGTERM");
      if (workers.size === 0) process.exit(1);
      return;
    }
    const crashLoop = worker !== undefined && Date.now() - worker.started < CRASH_WINDOW_MS;
    log.warn(
      event(`worker ${index} (pid ${worker?.proc.pid}) died (${how}); restarting${crashLoop ? ` in ${RESTART_DELAY_MS} ms` : ""}`, {
        worker: index,
        pid: worker?.proc.pid ?? null,
        exitCode: code,
        signal,
        restartDelayMs: crashLoop ? RESTART_DELAY_MS : 0,
      }),
    );
    restarts++;
    if (crashLoop) setTimeout(() => stopping === null && start(index), RESTART_DELAY_MS);
    else start(index);
  };

  const stop = (signal: NodeJS.Signals) => {
    if (stopping === "failed") return;
    if (stopping !== null) {
      log.warn(`${signal} again: killing the workers`);
      for (const { proc } of workers.values()) proc.kill("SIGKILL");
      process.exit(1);
    }
    stopping = signal;
    log.info(event(`${signal}: stopping ${workers.size} workers`, { signal, workers: workers.size }));
    for (const { proc } of workers.values()) proc.kill(signal);
    if (workers.size === 0) process.exit(0);
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  // SIGUSR2: a new supervisor (the program at its path) takes the listeners and starts its own
  // workers; once they are ready, these workers stop accepting and drain (sessions of workers
  // do not move; they end within the drain timeout).
  process.on("SIGUSR2", () => {
    if (stopping !== null) return;
    log.info("SIGUSR2: upgrading: starting the new supervisor");
    const old = {
      handover: listenersOnly(listeners),
      activeSessions: () => 0,
      stopAccepting() {},
      closeAdmin: () => server?.stop(),
      finish: () => stop("SIGTERM"),
      log,
      ...(upgradeTimeout !== undefined ? { readyTimeout: upgradeTimeout } : {}),
    };
    upgrade(old, args).catch((error: Error) => log.error(event(`upgrade failed: ${error.message}; this supervisor keeps serving`, { signal: "SIGUSR2" })));
  });
  for (const signal of ["SIGHUP", "SIGUSR1"] as const) {
    process.on(signal, () => {
      for (const { proc } of workers.values()) proc.kill(signal);
    });
  }

  for (let index = 1; index <= count; index++) start(index);
  const pids = [...workers.values()].map((w) => w.proc.pid);
  log.info(event(`started ${count} workers (pids ${pids.join(", ")})`, { workers: count, pids }));
  return await new Promise<never>(() => {});
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
