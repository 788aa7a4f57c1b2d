/** Loopback helpers: free ports and waiting for a listener. All traffic stays on 127.0.0.1. */
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
