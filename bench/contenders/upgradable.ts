/**
 * The upgrade suite's contenders: one forwarder in front of one target, upgraded (or reloaded)
 * in place the way each one documents it, with the time from the signal until the old process
 * is gone:
 *
 * - tcprouter: `kill -USR2 <pid>`; the program at its own path takes the listeners and the
 *   plain sessions and the old process exits. The new pid is read from the old one's log line
 *   (`upgrade: pid N took over …`), or is the old one's child. `--drain-timeout 2s`.
 * - haproxy: master-worker (`-W -db -p pidfile`), `stats socket … expose-fd listeners` so the
 *   new worker takes the listening sockets from the old one; `kill -USR2 <master>` reloads
 *   (the master re-executes itself, same pid), the old worker finishes its sessions until
 *   `hard-stop-after 2s`. Old = the master's workers before the signal.
 * - nginx: stream module, daemonized (the binary upgrade is ignored when the master's parent
 *   has not changed, as under `daemon off`), binary upgrade as nginx documents it:
 *   `kill -USR2 <master>` (a new master from the same binary, with the listening sockets),
 *   then `kill -WINCH <old master>` (its workers stop gracefully) and `kill -QUIT <old
 *   master>`; `worker_shutdown_timeout 2s`. Old = the old master and its workers.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOST, freePort, waitForPort } from "../runner/net.ts";
import { descendants, pidAlive, run, stopPid, trackPid, workDir } from "../runner/procs.ts";
import { findHaproxy, haproxyHead, haproxyVersion } from "./haproxy.ts";
import { ROOT, launch } from "./launch.ts";
import { NGINX_STREAM_MODULE, findNginx, nginxConfig } from "./nginx.ts";
import { DEFAULT_TCPROUTER_CMD, tcprouterMissing, tcprouterVersion } from "./tcprouter.ts";

export const UPGRADE_CONTENDERS = ["tcprouter", "haproxy", "nginx"] as const;
export type UpgradeContenderName = (typeof UPGRADE_CONTENDERS)[number];

/** What cuts the sessions an old process still has: the same 2 s for all three. */
export const HARD_STOP_S = 2;
/** Longest an upgrade may take (signal → old process gone) before the sample fails. */
const UPGRADE_DEADLINE_MS = 30_000;

export interface UpgradeSample {
  /** Signal → the old process (all of them) gone. */
  ms: number;
  oldPids: number[];
  newPid: number;
  /** What the contender said of it (tcprouter: sessions moved), when it says something. */
  note?: string;
}

export interface Upgradable {
  port: number;
  /** The process that is signalled now (tcprouter: the serving one; HAProxy, nginx: the master). */
  pid(): number;
  upgrade(): Promise<UpgradeSample>;
  stop(): Promise<void>;
}

export interface UpgradeContender {
  name: UpgradeContenderName;
  version: string;
  skip: string | undefined;
  command: string;
  start(targetPort: number, tag: string): Promise<Upgradable>;
}

/** Polls every 5 ms until `done()` or the deadline; the time it became true. */
async function until(what: string, done: () => boolean, ms = UPGRADE_DEADLINE_MS): Promise<number> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
  return performance.now();
}

const allGone = (pids: number[]) => pids.every((pid) => !pidAlive(pid));

/** The pid in a pid file; 0 while it is absent or being rewritten (nginx renames it on USR2). */
function readPid(file: string): number {
  try {
    return Number(readFileSync(file, "utf8").trim()) || 0;
  } catch {
    return 0;
  }
}

async function tcprouter(cmd: string | undefined): Promise<UpgradeContender> {
  const command = `${cmd ?? DEFAULT_TCPROUTER_CMD} --listen ${HOST}:PORT --to ${HOST}:TARGET --drain-timeout ${HARD_STOP_S}s --log-level info`;
  return {
    name: "tcprouter",
    version: await tcprouterVersion(),
    skip: tcprouterMissing(cmd),
    command: `${command}; kill -USR2 <pid>`,
    async start(targetPort, tag) {
      const port = await freePort();
      const line = command.replace("PORT", String(port)).replace("TARGET", String(targetPort));
      const first = await launch(tag, ["bash", "-c", `exec ${line}`], port, ROOT);
      const log = join(workDir(), `${tag}.log`);
      let current = first.pid!;
      let upgrades = 0;
      return {
        port,
        pid: () => current,
        async upgrade() {
          const old = current;
          const t0 = performance.now();
          process.kill(old, "SIGUSR2");
          let child: number | undefined;
          const gone = await until(`tcprouter ${old} to exit after SIGUSR2`, () => {
            child ??= descendants(old)[0];
            return !pidAlive(old);
          });
          // every process writes to the same log (the new one inherits its stdout)
          const lines = [...readFileSync(log, "utf8").matchAll(/upgrade: pid (\d+) took over the listeners and (\d+) of (\d+) movable sessions; (\d+) left/g)];
          const said = lines[upgrades];
          const next = said ? Number(said[1]) : child;
          if (next === undefined || !pidAlive(next))
            throw new Error(`tcprouter ${old}: no new process after SIGUSR2\n${readFileSync(log, "utf8").split("\n").slice(-10).join("\n")}`);
          upgrades++;
          trackPid(next);
          current = next;
          const note = said ? `${said[2]} of ${said[3]} movable sessions moved, ${said[4]} drained` : undefined;
          return { ms: gone - t0, oldPids: [old], newPid: next, ...(note ? { note } : {}) };
        },
        async stop() {
          if (current !== first.pid) await stopPid(current);
          await first.stop();
        },
      };
    },
  };
}

async function haproxy(): Promise<UpgradeContender> {
  const bin = findHaproxy();
  return {
    name: "haproxy",
    version: await haproxyVersion(bin),
    skip: bin ? undefined : "haproxy not installed",
    command: `haproxy -W -db -f haproxy.cfg -p haproxy.pid (hard-stop-after ${HARD_STOP_S}s, stats socket … expose-fd listeners); kill -USR2 <master>`,
    async start(targetPort, tag) {
      const port = await freePort();
      const dir = workDir();
      const cfg = join(dir, `${tag}.cfg`);
      const global = [`hard-stop-after ${HARD_STOP_S}s`, `stats socket ${join(dir, `${tag}.sock`)} mode 600 level admin expose-fd listeners`];
      writeFileSync(cfg, `${haproxyHead([], global)}\nlisten fwd\n  bind ${HOST}:${port}\n  server target ${HOST}:${targetPort}\n`);
      const master = await launch(tag, [bin!, "-W", "-db", "-f", cfg, "-p", join(dir, `${tag}.pid`)], port);
      const masterPid = master.pid!;
      await until("the HAProxy worker", () => descendants(masterPid).length > 0, 10_000);
      return {
        port,
        pid: () => masterPid,
        async upgrade() {
          const old = descendants(masterPid);
          const t0 = performance.now();
          process.kill(masterPid, "SIGUSR2");
          await until("a new HAProxy worker", () => descendants(masterPid).some((pid) => !old.includes(pid)));
          const gone = await until(`the old HAProxy worker(s) ${old.join(",")} to exit`, () => allGone(old));
          if (!pidAlive(masterPid)) throw new Error("the HAProxy master exited on SIGUSR2");
          const newPid = descendants(masterPid).find((pid) => !old.includes(pid))!;
          return { ms: gone - t0, oldPids: old, newPid };
        },
        stop: () => master.stop(),
      };
    },
  };
}

async function nginx(): Promise<UpgradeContender> {
  const found = await findNginx();
  return {
    name: "nginx",
    version: found.version,
    skip: found.skip,
    command: `nginx -c nginx.conf (stream proxy_pass, worker_processes auto, worker_shutdown_timeout ${HARD_STOP_S}s, daemonized); kill -USR2 <master>, -WINCH and -QUIT <old master>`,
    async start(targetPort, tag) {
      const port = await freePort();
      const prefix = join(workDir(), tag);
      await Bun.write(join(prefix, "logs", ".keep"), "");
      const cfg = join(prefix, "nginx.conf");
      const pidFile = join(prefix, "nginx.pid");
      writeFileSync(cfg, nginxConfig(port, targetPort, prefix, existsSync(NGINX_STREAM_MODULE), [`worker_shutdown_timeout ${HARD_STOP_S}s;`]));
      // daemonized: nginx forks its master and this command returns
      const started = await run([found.bin!, "-p", prefix, "-e", join(prefix, "logs/error.log"), "-c", cfg], 10_000);
      if (started.code !== 0) throw new Error(`${tag}: nginx did not start (${started.code}): ${(started.stdout + started.stderr).trim()}`);
      // the daemon writes its pid file after the command returned
      await until("nginx.pid", () => readPid(pidFile) !== 0, 10_000);
      let master = readPid(pidFile);
      trackPid(master);
      await waitForPort(port, 15_000, () => pidAlive(master));
      return {
        port,
        pid: () => master,
        async upgrade() {
          const old = master;
          const oldTree = [old, ...descendants(old)];
          const t0 = performance.now();
          process.kill(old, "SIGUSR2");
          // the new master writes nginx.pid (the old one's is renamed nginx.pid.oldbin) and starts its workers
          let next = 0;
          await until("the new nginx master", () => {
            const now = readPid(pidFile);
            if (now === 0 || now === old || !pidAlive(now)) return false;
            if (next !== now) trackPid(now); // stopped by cleanup even if this upgrade fails
            next = now;
            return descendants(now).length > 0;
          });
          process.kill(old, "SIGWINCH");
          process.kill(old, "SIGQUIT");
          const gone = await until(`the old nginx master ${old} and its workers to exit`, () => allGone(oldTree));
          await stopPid(old, 0); // forget it (gone already)
          master = next;
          return { ms: gone - t0, oldPids: oldTree, newPid: next };
        },
        stop: () => stopPid(master),
      };
    },
  };
}

/** The contenders asked for, in the order given, each knowing whether it can run here. */
export async function loadUpgradeContenders(names: UpgradeContenderName[], tcprouterCmd: string | undefined): Promise<UpgradeContender[]> {
  const out: UpgradeContender[] = [];
  for (const name of names) out.push(name === "tcprouter" ? await tcprouter(tcprouterCmd) : name === "haproxy" ? await haproxy() : await nginx());
  return out;
}
