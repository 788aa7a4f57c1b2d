/** nginx (stream module) as a contender: found, its version, and one `stream { server { proxy_pass } }`. */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOST, freePort } from "../runner/net.ts";
import { run, versionOf, workDir } from "../runner/procs.ts";
import { launch, type Instance } from "./launch.ts";

export const NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

export interface Nginx {
  /** The nginx binary; null when not installed. */
  bin: string | null;
  version: string;
  /** Why it cannot run here (not installed, no stream module); undefined when it can. */
  skip: string | undefined;
  /** A forwarder from a fresh port to `targetPort`. */
  start(targetPort: number, tag: string): Promise<Instance>;
}

export async function findNginx(): Promise<Nginx> {
  const bin = Bun.which("nginx") ?? Bun.which("nginx", { PATH: "/usr/sbin:/usr/local/sbin" });
  const build = bin ? await run([bin, "-V"], 5000).then((r) => r.stdout + r.stderr) : "";
  const dynamic = build.includes("--with-stream=dynamic");
  const hasStream = existsSync(NGINX_STREAM_MODULE) || (build.includes("--with-stream") && !dynamic);
  return {
    bin,
    version: bin ? await versionOf([bin, "-v"]) : "not installed",
    skip: !bin ? "nginx not installed" : !hasStream ? "nginx stream module not installed" : undefined,
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

/**
 * nginx.conf of one stream forwarder from `port` to `targetPort`, pid file and logs under
 * `prefix`; `main` lines go to the main context (e.g. `worker_shutdown_timeout 2s;`).
 */
export function nginxConfig(port: number, targetPort: number, prefix: string, loadModule: boolean, main: string[] = []): string {
  return `${loadModule ? `load_module ${NGINX_STREAM_MODULE};\n` : ""}worker_processes auto;
${main.map((line) => `${line}\n`).join("")}worker_rlimit_nofile 20000;
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
