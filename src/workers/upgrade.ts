/**
 * Upgrade in place (SIGUSR2, `POST /api/upgrade`, `tcprouter ctl upgrade`): the running
 * process starts the program at its own path again (the new version, once it was replaced on
 * disk), hands it every listening socket and the state of every target, waits until it says it
 * is ready, stops accepting, and hands it its established plain-TCP and SNI-passthrough
 * sessions, both sockets and the bytes queued each way. Then it drains what could not move
 * (TLS-terminated sessions, sessions dialled over TLS) and exits.
 *
 * The old process (O) and the new one (N) talk over Bun's IPC channel, in this order:
 *
 *   N → O  hello                      N is listening for messages
 *   O → N  takeover {listeners, targets, pid}
 *   N      copies the listening descriptors (pidfd_getfd), adopts them, restores the targets
 *   N → O  ready                      N accepts on the same sockets (nothing was ever unbound)
 *   O      stops accepting, closes its admin listener, freezes its movable sessions
 *   O → N  sessions {records}
 *   N      copies both descriptors of each, adopts them with their queued bytes
 *   N → O  adopted {taken}
 *   O      closes its copies without a FIN (close(2) of one of two descriptors), drains the rest, exits 0
 *
 * A new process that exits, or is not ready within the timeout, is killed; the old one never
 * stopped serving and logs one error line. Descriptors are copied with pidfd_getfd, which
 * needs Linux 5.6 and ptrace access to the old process (granted to the child with
 * PR_SET_PTRACER under Yama).
 */
import type { HandoverApi, InheritedListener, SavedTargets, SessionRecord } from "../proxy/handover-record.ts";
import { allowPtraceBy, closeFd, pidfdGetfd, pidfdOpen } from "../util/fds.ts";
import { event, type Logger } from "../util/log.ts";
import { programCommand } from "./program.ts";
import { DEFAULTS } from "../config/defaults.ts";

/** Set in the new process's environment: the old process's pid. */
export const UPGRADE_ENV = "TCPROUTER_UPGRADE_FROM";

type Message =
  | { type: "hello" }
  | { type: "takeover"; listeners: InheritedListener[]; targets: SavedTargets }
  | { type: "ready" }
  | { type: "sessions"; records: SessionRecord[] }
  | { type: "adopted"; taken: number[] };

export interface UpgradeResult {
  /** The new process's pid. */
  pid: number;
  /** Sessions handed over, and sessions left to drain here. */
  moved: number;
  draining: number;
}

export class UpgradeError extends Error {}

/** What the old process does around a handover. */
export interface OldProcess {
  handover: HandoverApi;
  /** Sessions open now. */
  activeSessions(): number;
  /** Stop accepting on every listener (the new process accepts on the same sockets now). */
  stopAccepting(): void;
  /** Close the admin listener, so that the new process can bind it. */
  closeAdmin(): void;
  /** Drain what is left (TLS sessions) for the drain timeout, then exit. */
  finish(): void;
  log: Logger;
  readyTimeout?: number;
}

let underWay = false;

/** Starts the new process and hands over to it. Rejects with UpgradeError (the old process serves on) when it fails. */
export async function upgrade(old: OldProcess, args: string[]): Promise<UpgradeResult> {
  if (underWay) throw new UpgradeError("an upgrade is already under way");
  underWay = true;
  try {
    return await handOver(old, args);
  } finally {
    underWay = false;
  }
}

async function handOver(old: OldProcess, args: string[]): Promise<UpgradeResult> {
  const { promise: readyOrFailed, resolve, reject } = Promise.withResolvers<void>();
  let adopted: ((taken: number[]) => void) | null = null;
  const timeout = old.readyTimeout ?? DEFAULTS.upgradeTimeout;
  let ready = false;
  const command = programCommand(args);
  const child = Bun.spawn(command, {
    env: { ...process.env, [UPGRADE_ENV]: String(process.pid) },
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    serialization: "json",
    ipc(message: Message) {
      if (message.type === "hello") {
        child.send({ type: "takeover", listeners: old.handover.listeners(), targets: old.handover.targets() } satisfies Message);
      } else if (message.type === "ready") {
        ready = true;
        resolve();
      } else if (message.type === "adopted") adopted?.(message.taken);
    },
    onExit(_proc, code, signal) {
      if (!ready) reject(new UpgradeError(`the new process exited (${signal !== null ? `signal ${signal}` : `exit code ${code}`}) before it was ready`));
      else adopted?.([]); // gone before it said which sessions it took: they stay here
    },
  });
  allowPtraceBy(child.pid);
  const timer = setTimeout(() => reject(new UpgradeError(`the new process was not ready within ${timeout} ms`)), timeout);
  try {
    await readyOrFailed;
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // N accepts on the same sockets: stop here (no connection waits unaccepted, none is refused).
  old.stopAccepting();
  old.closeAdmin();
  const records = old.handover.freeze();
  const taken = await new Promise<number[]>((done) => {
    adopted = done;
    child.send({ type: "sessions", records } satisfies Message);
  });
  const moved = old.handover.handedOff(new Set(taken));
  const draining = old.activeSessions();
  old.log.info(
    event(`upgrade: pid ${child.pid} took over the listeners and ${moved} of ${records.length} movable sessions; ${draining} left to drain here`, {
      pid: child.pid,
      moved,
      movable: records.length,
      draining,
    }),
  );
  child.unref();
  old.finish();
  return { pid: child.pid, moved, draining };
}

/** In the new process: true when it was started by an upgrade. */
export function isUpgrade(): boolean {
  return process.env[UPGRADE_ENV] !== undefined;
}

/** What the new process gets before it starts its router. */
export interface Takeover {
  listeners: InheritedListener[];
  targets: SavedTargets;
  /** Answers `ready` and takes the sessions once the router runs (see `adoptSessions`). */
  ready(handover: HandoverApi, log: Logger): Promise<number>;
}

/**
 * In the new process: asks the old one for its listeners and target states, and copies the
 * listening descriptors. Throws UpgradeError when they cannot be copied.
 */
export async function takeOver(): Promise<Takeover> {
  const from = Number(process.env[UPGRADE_ENV]);
  delete process.env[UPGRADE_ENV]; // a later upgrade of this process is a new one
  const inbox: Message[] = [];
  let wake: (() => void) | null = null;
  process.on("message", (message: Message) => {
    inbox.push(message);
    wake?.();
  });
  const next = async (type: Message["type"]): Promise<Message> => {
    for (;;) {
      const index = inbox.findIndex((message) => message.type === type);
      if (index >= 0) return inbox.splice(index, 1)[0]!;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
  process.send!({ type: "hello" } satisfies Message);
  const takeover = (await next("takeover")) as Extract<Message, { type: "takeover" }>;
  let pidfd: number;
  try {
    pidfd = pidfdOpen(from);
  } catch (error) {
    throw new UpgradeError(`cannot reach the old process ${from}: ${(error as Error).message}`);
  }
  const listeners = takeover.listeners.map((listener) => {
    try {
      return { ...listener, fd: pidfdGetfd(pidfd, listener.fd) };
    } catch (error) {
      throw new UpgradeError(`cannot take the listening socket ${listener.address}: ${(error as Error).message}`);
    }
  });
  return {
    listeners,
    targets: takeover.targets,
    async ready(handover, log) {
      process.send!({ type: "ready" } satisfies Message);
      const { records } = (await next("sessions")) as Extract<Message, { type: "sessions" }>;
      const taken: number[] = [];
      const adopted: SessionRecord[] = [];
      records.forEach((record, index) => {
        try {
          const clientFd = pidfdGetfd(pidfd, record.client);
          try {
            adopted.push({ ...record, clientFd, upstreamFd: pidfdGetfd(pidfd, record.upstream) });
            taken.push(index);
          } catch {
            closeFd(clientFd);
          }
        } catch {
          // left to the old process, which drains it
        }
      });
      handover.adopt(adopted);
      process.send!({ type: "adopted", taken } satisfies Message);
      closeFd(pidfd);
      if (taken.length < records.length) log.warn(`upgrade: ${records.length - taken.length} sessions could not be taken over; the old process drains them`);
      return taken.length;
    },
  };
}
