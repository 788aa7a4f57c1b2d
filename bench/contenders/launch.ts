/**
 * How a contender runs: a process that listens on a fresh 127.0.0.1 port and forwards every
 * connection to a target. `launch` starts it and waits until it accepts; "direct" is the
 * target itself (the baseline); `startBunFloor` runs the bare Bun forwarder (bun-floor.ts).
 */
import { join, resolve } from "node:path";
import { waitForPort } from "../runner/net.ts";
import { logTail, startServer } from "../runner/procs.ts";

/** Repo root (bench/..): the tcprouter command and bun-floor run from here. */
export const ROOT = resolve(import.meta.dir, "../..");

/** A running instance: connect to `port`; `pid` is the process whose tree RSS and CPU are measured. */
export interface Instance {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;

/** Starts `argv`, waits until `port` accepts, and fails with the log tail if it does not. */
export async function launch(tag: string, argv: string[], port: number, cwd?: string): Promise<Instance> {
  const server = startServer(tag, argv, cwd);
  try {
    await waitForPort(port, START_TIMEOUT_MS, () => server.proc.exitCode === null && server.proc.signalCode === null);
  } catch (err) {
    await server.stop();
    throw new Error(`${tag}: ${(err as Error).message}\n${logTail(server)}`);
  }
  return { port, pid: server.pid, stop: () => server.stop() };
}

/**
 * `start()` again while it fails because a port it picked is in use: a port freePort found free
 * can be taken (as a connection's local port, on a machine busy with new connections) before the
 * server binds it. Three tries; any other failure is thrown at once.
 */
export async function withFreshPorts(start: () => Promise<Instance>, tries = 3): Promise<Instance> {
  for (let n = 1; ; n++) {
    try {
      return await start();
    } catch (error) {
      if (n >= tries || !/address already in use|EADDRINUSE/i.test((error as Error).message)) throw error;
    }
  }
}

/** "direct": no process in between, the client connects to the target itself. */
export function directInstance(targetPort: number): Instance {
  return { port: targetPort, pid: undefined, stop: async () => {} };
}

/** bench/contenders/bun-floor.ts, relative to ROOT (as the header shows it). */
export const BUN_FLOOR = "bench/contenders/bun-floor.ts";

/** The header's command line of bun-floor with `args` (its own arguments, described). */
export const bunFloorCommand = (args: string) => `bun ${BUN_FLOOR} ${args}`;

/**
 * The bare Bun forwarder on `port`: `bun bench/contenders/bun-floor.ts [--dial-on-data] PORT
 * BALANCE TARGET...`, run by the bun that runs the bench.
 */
export function startBunFloor(tag: string, port: number, balance: string, targets: number[], dialOnData = false): Promise<Instance> {
  const argv = [process.execPath, join(ROOT, BUN_FLOOR), ...(dialOnData ? ["--dial-on-data"] : []), String(port), balance, ...targets.map(String)];
  return launch(tag, argv, port, ROOT);
}
