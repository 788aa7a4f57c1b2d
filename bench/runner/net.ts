/** Loopback helpers: free ports and waiting for a listener. All traffic stays on 127.0.0.1. */
import { readFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";

export const HOST = "127.0.0.1";

/** A port the kernel just handed out (bound on 127.0.0.1, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, resolve);
  });
  const addr = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("freePort: no address");
  return addr.port;
}

/**
 * A port below the ephemeral range (ip_local_port_range), free for TCP and for UDP on
 * 127.0.0.1 a moment ago. For a server that binds without SO_REUSEADDR (dnsmasq): any
 * connection's TIME_WAIT on its port makes that bind fail, and a connection's local port
 * always comes from the ephemeral range, so a port below it is never held that way.
 */
export async function freeFixedPort(): Promise<number> {
  const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
  const base = Math.max(1024, low - 10_000);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = base + Math.floor(Math.random() * (low - base));
    try {
      Bun.listen({ hostname: HOST, port, socket: { data() {} } }).stop(true);
      (await Bun.udpSocket({ hostname: HOST, port })).close();
      return port;
    } catch {
      // in use for TCP or UDP: another
    }
  }
  throw new Error(`no port below ${low} free for TCP and UDP after 50 tries`);
}

/** True if a TCP connect to `port` succeeds within `timeoutMs`. */
export function canConnect(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: HOST, port });
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(ok: boolean): void {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    }
    sock.once("connect", () => finish(true));
    sock.once("error", () => finish(false));
  });
}

/**
 * Polls `port` every 50 ms until it accepts, up to `timeoutMs`. `alive()` lets the caller stop
 * early when the process that should listen has already exited.
 */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`process exited before listening on ${HOST}:${port}`);
    if (await canConnect(port, 300)) return;
    await Bun.sleep(50);
  }
  throw new Error(`nothing listening on ${HOST}:${port} after ${timeoutMs} ms`);
}
