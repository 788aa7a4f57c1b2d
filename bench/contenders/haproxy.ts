/** HAProxy as a contender: where it is, its version, the config head every suite shares, and starting it. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOST, freePort } from "../runner/net.ts";
import { versionOf, workDir } from "../runner/procs.ts";
import { launch, type Instance } from "./launch.ts";

/** The haproxy binary, also where Debian puts it outside a user's PATH; null when not installed. */
export function findHaproxy(): string | null {
  return Bun.which("haproxy") ?? Bun.which("haproxy", { PATH: "/usr/sbin:/usr/local/sbin" });
}

/** `haproxy -v`'s first line, or "not installed". */
export async function haproxyVersion(bin: string | null): Promise<string> {
  return bin ? await versionOf([bin, "-v"]) : "not installed";
}

export const HAPROXY_MISSING = "haproxy not installed";

/**
 * The global and defaults sections every bench HAProxy config starts with: mode tcp, no
 * logging, long client/server timeouts; maxconn fits the 20k fd hard limit (2 fds per session).
 * `defaults` lines are added to the defaults section, `global` lines to the global one.
 */
export function haproxyHead(defaults: string[] = [], global: string[] = []): string {
  return `global
  maxconn 9000
${global.map((line) => `  ${line}\n`).join("")}
defaults
  mode tcp
  maxconn 9000
  timeout connect 5s
  timeout client 1h
  timeout server 1h
${defaults.map((line) => `  ${line}\n`).join("")}`;
}

/** Minimal TCP forwarder config. */
export function haproxyForward(port: number, targetPort: number): string {
  return `${haproxyHead()}
listen fwd
  bind ${HOST}:${port}
  server target ${HOST}:${targetPort}
`;
}

/** `haproxy -f <tag>.cfg -db` on a fresh port, the config written by `config(port)`. */
export async function startHaproxy(bin: string, tag: string, config: (port: number) => string): Promise<Instance> {
  const port = await freePort();
  const cfg = join(workDir(), `${tag}.cfg`);
  writeFileSync(cfg, config(port));
  return launch(tag, [bin, "-f", cfg, "-db"], port);
}
