/**
 * The redis suite's line-up: what sits between the load generator and one target port. Each
 * one starts an instance that listens on a fresh 127.0.0.1 port and forwards every connection
 * to the target. "direct" is the target itself (the baseline), the others are real processes.
 */
import { HOST, freePort } from "../runner/net.ts";
import { HAPROXY_MISSING, findHaproxy, haproxyForward, haproxyVersion, startHaproxy } from "./haproxy.ts";
import { bunFloorCommand, directInstance, startBunFloor, type Instance } from "./launch.ts";
import { findNginx } from "./nginx.ts";
import { DEFAULT_TCPROUTER_CMD, startForward, tcprouterMissing, tcprouterVersion } from "./tcprouter.ts";

/**
 * `tcprouter-2w`: tcprouter with `--workers 2` (HAProxy and nginx use every core by default).
 * `tcprouter-base`: another build of tcprouter (`--baseline-cmd`, e.g. an older checkout), so a
 * change is measured against its parent in the same run, rounds interleaved.
 * `bun-floor`: the bare Bun.listen/Bun.connect forwarder (bun-floor.ts), what any forwarder on
 * Bun costs at least: its requests/s and CPU per request are Bun's own share of tcprouter's.
 */
export const CONTENDER_NAMES = ["direct", "tcprouter", "tcprouter-base", "tcprouter-2w", "bun-floor", "haproxy", "nginx"] as const;
export type ContenderName = (typeof CONTENDER_NAMES)[number];

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

function direct(): Contender {
  return {
    name: "direct",
    version: "-",
    skip: undefined,
    command: "(the target itself)",
    start: async (targetPort) => directInstance(targetPort),
  };
}

/** `cmd` is a shell word list, e.g. `bun run src/cli.ts` or `dist/tcprouter`. */
async function tcprouter(cmd: string | undefined, workers = 1, name: ContenderName = workers > 1 ? "tcprouter-2w" : "tcprouter"): Promise<Contender> {
  const command = `${cmd ?? DEFAULT_TCPROUTER_CMD}${workers > 1 ? ` --workers ${workers}` : ""}`;
  return {
    name,
    version: await tcprouterVersion(),
    skip: tcprouterMissing(cmd),
    command: `${command} --listen ${HOST}:PORT --to ${HOST}:TARGET --log-level warn`,
    start: (targetPort, tag) => startForward(command, targetPort, tag),
  };
}

function bunFloor(): Contender {
  return {
    name: "bun-floor",
    version: `bun ${Bun.version}`,
    skip: undefined,
    command: bunFloorCommand("PORT round-robin TARGET"),
    start: async (targetPort, tag) => startBunFloor(tag, await freePort(), "round-robin", [targetPort]),
  };
}

async function haproxy(): Promise<Contender> {
  const bin = findHaproxy();
  return {
    name: "haproxy",
    version: await haproxyVersion(bin),
    skip: bin ? undefined : HAPROXY_MISSING,
    command: "haproxy -f haproxy.cfg -db (mode tcp, nbthread default, no logging)",
    start: (targetPort, tag) => startHaproxy(bin!, tag, (port) => haproxyForward(port, targetPort)),
  };
}

async function nginx(): Promise<Contender> {
  const found = await findNginx();
  return {
    name: "nginx",
    ...found,
    command: "nginx -c nginx.conf -g 'daemon off;' (stream proxy_pass, worker_processes auto)",
  };
}

/** The contenders asked for, in the order given, each knowing whether it can run here. */
export async function loadContenders(names: ContenderName[], tcprouterCmd: string | undefined, baselineCmd?: string): Promise<Contender[]> {
  const out: Contender[] = [];
  for (const name of names) {
    if (name === "direct") out.push(direct());
    else if (name === "tcprouter") out.push(await tcprouter(tcprouterCmd));
    else if (name === "tcprouter-base") out.push({ ...(await tcprouter(baselineCmd, 1, name)), skip: baselineCmd ? undefined : "no --baseline-cmd given" });
    else if (name === "tcprouter-2w") out.push(await tcprouter(tcprouterCmd, 2));
    else if (name === "bun-floor") out.push(bunFloor());
    else if (name === "haproxy") out.push(await haproxy());
    else out.push(await nginx());
  }
  return out;
}
