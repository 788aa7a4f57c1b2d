/**
 * nginx's stream module as a UDP contender: `listen 127.0.0.1:P udp; proxy_pass;
 * proxy_responses; proxy_timeout;` server blocks (and plain TCP ones next to them, for
 * iperf3's control connection), started as the redis suite's nginx is (a temp prefix, its own
 * pid file, `daemon off`, `worker_processes auto`), ready once a probe datagram is answered.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOST } from "../runner/net.ts";
import { workDir } from "../runner/procs.ts";
import type { Instance } from "./launch.ts";
import { type StreamServer, launchProbed } from "./udp-launch.ts";

const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

/** The nginx binary, or null. */
export const nginxBin = (): string | null => Bun.which("nginx") ?? Bun.which("nginx", { PATH: "/usr/sbin:/usr/local/sbin" });

/** One `server {}` block of the stream context. */
function serverBlock(s: StreamServer, reuseport: boolean): string {
  if (!s.udp) return `  server {\n    listen ${HOST}:${s.port};\n    proxy_pass ${HOST}:${s.target};\n    proxy_timeout 1h;\n  }\n`;
  const responses = s.responses ? `    proxy_responses ${s.responses};\n` : "";
  return `  server {\n    listen ${HOST}:${s.port} udp${reuseport ? " reuseport" : ""};\n    proxy_pass ${HOST}:${s.target};\n${responses}    proxy_timeout ${s.idleSeconds}s;\n  }\n`;
}

/**
 * nginx.conf with one stream server per entry of `servers`, pid file and logs under `prefix`.
 * `worker_connections 9000`: a UDP session holds two connections (client side and upstream).
 */
export function nginxUdpConfig(servers: StreamServer[], prefix: string, reuseport: boolean): string {
  return `${existsSync(STREAM_MODULE) ? `load_module ${STREAM_MODULE};\n` : ""}worker_processes auto;
worker_rlimit_nofile 20000;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log error;

events {
  worker_connections 9000;
}

stream {
${servers.map((s) => serverBlock(s, reuseport)).join("")}}
`;
}

/** Starts nginx (`bin`) with `servers`; ready when `ready()` is true (a datagram answered through it). */
export async function startNginxUdp(bin: string, tag: string, servers: StreamServer[], reuseport: boolean, ready: () => Promise<boolean>): Promise<Instance> {
  const prefix = join(workDir(), tag);
  mkdirSync(join(prefix, "logs"), { recursive: true });
  const cfg = join(prefix, "nginx.conf");
  writeFileSync(cfg, nginxUdpConfig(servers, prefix, reuseport));
  const argv = [bin, "-p", prefix, "-e", join(prefix, "logs/error.log"), "-c", cfg, "-g", "daemon off;"];
  return launchProbed(tag, argv, servers[0]!.port, ready);
}
