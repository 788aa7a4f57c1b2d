/**
 * Contenders: what sits between the load generator and the target. Each one can start an
 * instance that listens on a fresh 127.0.0.1 port and forwards every connection to a target
 * port. "direct" is the target itself (the baseline), the others are real processes.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DEFAULT_TCPROUTER_CMD } from "./flags.ts";
import { HOST, freePort, waitForPort } from "./net.ts";
import { logTail, run, startServer, versionOf, workDir } from "./procs.ts";

/** `tcprouter-2w`: tcprouter with `--workers 2` (HAProxy and nginx use every core by default). */
export const CONTENDER_NAMES = ["direct", "tcprouter", "tcprouter-2w", "haproxy", "nginx"] as const;
export type ContenderName = (typeof CONTENDER_NAMES)[number];

/** Repo root (bench/..): the tcprouter command runs from here. */
export const ROOT = resolve(import.meta.dir, "..");

/** A running instance: connect to `port`; `pid` is the process whose tree RSS is measured. */
export interface Instance {
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface Contender {
  name: ContenderName;
  /** Version line for the header. */
  version: string;
  /** Why it cannot run here (not installed, ...); undefined when it can. */
  skip: string | undefined;
  /** Command line shown in the header. */
  command: string;
  start(targetPort: number, tag: string): Promise<Instance>;
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

function direct(): Contender {
  return {
    name: "direct",
    version: "-",
    skip: undefined,
    command: "(the target itself)",
    start: async (targetPort) => ({ port: targetPort, pid: undefined, stop: async () => {} }),
  };
}

/** `cmd` is a shell word list, e.g. `bun run src/cli.ts` or `dist/tcprouter`. */
async function tcprouter(cmd: string | undefined, workers = 1): Promise<Contender> {
  const command = `${cmd ?? DEFAULT_TCPROUTER_CMD}${workers > 1 ? ` --workers ${workers}` : ""}`;
  const missing = cmd === undefined && !existsSync(join(ROOT, "src/cli.ts"));
  const pkg = (await Bun.file(join(ROOT, "package.json")).json().catch(() => ({}))) as { version?: string };
  return {
    name: workers > 1 ? "tcprouter-2w" : "tcprouter",
    version: `tcprouter ${pkg.version ?? "?"}`,
    skip: missing ? "src/cli.ts not found" : undefined,
    command: `${command} --listen ${HOST}:PORT --to ${HOST}:TARGET --log-level warn`,
    async start(targetPort, tag) {
      const port = await freePort();
      const line = `exec ${command} --listen ${HOST}:${port} --to ${HOST}:${targetPort} --log-level warn`;
      return launch(tag, ["bash", "-c", line], port, ROOT);
    },
  };
}

/** The haproxy binary, also where Debian puts it outside a user's PATH; null when not installed. */
export function findHaproxy(): string | null {
  return Bun.which("haproxy") ?? Bun.which("haproxy", { PATH: "/usr/sbin:/usr/local/sbin" });
}

async function haproxy(): Promise<Contender> {
  const bin = findHaproxy();
  return {
    name: "haproxy",
    version: bin ? await versionOf([bin, "-v"]) : "not installed",
    skip: bin ? undefined : "haproxy not installed",
    command: "haproxy -f haproxy.cfg -db (mode tcp, nbthread default, no logging)",
    async start(targetPort, tag) {
      const port = await freePort();
      const cfg = join(workDir(), `${tag}.cfg`);
      writeFileSync(cfg, haproxyConfig(port, targetPort));
      return launch(tag, [bin!, "-f", cfg, "-db"], port);
    },
  };
}

/**
 * The global and defaults sections every bench HAProxy config starts with: mode tcp, no
 * logging, long client/server timeouts; maxconn fits the 20k fd hard limit (2 fds per session).
 * `defaults` lines are added to the defaults section.
 */
export function haproxyHead(defaults: string[] = []): string {
  return `global
  maxconn 9000

defaults
  mode tcp
  maxconn 9000
  timeout connect 5s
  timeout client 1h
  timeout server 1h
${defaults.map((line) => `  ${line}\n`).join("")}`;
}

/** Minimal TCP forwarder config. */
function haproxyConfig(port: number, targetPort: number): string {
  return `${haproxyHead()}
listen fwd
  bind ${HOST}:${port}
  server target ${HOST}:${targetPort}
`;
}

const NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

async function nginx(): Promise<Contender> {
  const bin = Bun.which("nginx") ?? Bun.which("nginx", { PATH: "/usr/sbin:/usr/local/sbin" });
  const build = bin ? await run([bin, "-V"], 5000).then((r) => r.stdout + r.stderr) : "";
  const dynamic = build.includes("--with-stream=dynamic");
  const hasStream = existsSync(NGINX_STREAM_MODULE) || (build.includes("--with-stream") && !dynamic);
  return {
    name: "nginx",
    version: bin ? await versionOf([bin, "-v"]) : "not installed",
    skip: !bin ? "nginx not installed" : !hasStream ? "nginx stream module not installed" : undefined,
    command: "nginx -c nginx.conf -g 'daemon off;' (stream proxy_pass, worker_processes auto)",
    async start(targetPort, tag) {
      const port = await freePort();
      const prefix = join(workDir(), tag);
      await Bun.write(join(prefix, "logs", ".keep"), "");
      const cfg = join(prefix, "nginx.conf");
      writeFileSync(cfg, nginxConfig(port, targetPort, prefix, existsSync(NGINX_STREAM_MODULE)));
      const argv = [bin!, "-p", prefix, "-e", join(prefix, "logs/error.log"), "-c", cfg, "-g", "daemon off;"];
      return launch(tag, argv, port);
    },
  };
}

function nginxConfig(port: number, targetPort: number, prefix: string, loadModule: boolean): string {
  return `${loadModule ? `load_module ${NGINX_STREAM_MODULE};\n` : ""}worker_processes auto;
worker_rlimit_nofile 20000;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log error;

events {
  worker_connections 9000;
}

stream {
  server {
    listen ${HOST}:${port};
    proxy_pass ${HOST}:${targetPort};
    proxy_connect_timeout 5s;
    proxy_timeout 1h;
  }
}
`;
}

/** The contenders asked for, in the order given, each knowing whether it can run here. */
export async function loadContenders(names: ContenderName[], tcprouterCmd: string | undefined): Promise<Contender[]> {
  const out: Contender[] = [];
  for (const name of names) {
    if (name === "direct") out.push(direct());
    else if (name === "tcprouter") out.push(await tcprouter(tcprouterCmd));
    else if (name === "tcprouter-2w") out.push(await tcprouter(tcprouterCmd, 2));
    else if (name === "haproxy") out.push(await haproxy());
    else out.push(await nginx());
  }
  return out;
}
