/**
 * A unix socket file left behind by a process that died without removing it (SIGKILL, a crash,
 * a power cut) makes the next bind fail with EADDRINUSE although nobody listens. Before a unix
 * listener or a unix admin is bound, `removeStaleSocket` removes such a file, and only such a
 * file: the path is a socket (lstat: not a regular file, a symlink or a directory) and a
 * connect to it is refused. A socket someone listens on is left alone (the bind then fails
 * with "address already in use", as before); anything else at the path is an error naming it.
 *
 * The connect is made through bun:ffi (libc socket + connect, non-blocking) because it must be
 * synchronous: a listener is bound inside the router's reload, which awaits nothing so that no
 * connection is accepted halfway, and the admin is started synchronously too. Bun has no
 * synchronous connect. A unix connect answers at once either way (accepted, queued, or
 * ECONNREFUSED), so a non-blocking one is exact. Where libc cannot be opened (not glibc Linux)
 * nothing is removed and the bind reports what it finds.
 */
import { ptr } from "bun:ffi";
import { lstatSync, unlinkSync } from "node:fs";
import { AF_UNIX, errno, libc, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM, SOCKADDR_UN_SIZE, sockaddrUn } from "./libc.ts";

const ECONNREFUSED = 111;

/** What a connect to a unix socket path says: someone listens, nobody does, or it cannot tell. */
export type SocketProbe = "live" | "refused" | "unknown";

/** Connects to the unix socket at `path` and closes at once. Synchronous (see the file comment). */
export function probeSocket(path: string): SocketProbe {
  const c = libc();
  const name = Buffer.from(path);
  if (c === null || name.length >= SOCKADDR_UN_SIZE - 2) return "unknown";
  const address = sockaddrUn(name);
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "unknown";
  try {
    if (c.connect(fd, ptr(address), SOCKADDR_UN_SIZE) === 0) return "live";
    const code = errno();
    // EAGAIN: the listener's backlog is full, so it is alive; anything else (EACCES) cannot tell.
    return code === ECONNREFUSED ? "refused" : code === 11 ? "live" : "unknown";
  } finally {
    c.close(fd);
  }
}

/**
 * Removes the socket file at `path` when nobody listens on it, so that it can be bound again.
 * Nothing at the path, a live socket, or one it cannot probe: left as it is. Throws a one-line
 * Error when something other than a socket is there (it is never removed).
 */
export function removeStaleSocket(path: string): void {
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return;
  if (!stat.isSocket()) {
    const what = stat.isSymbolicLink() ? "a symlink" : stat.isDirectory() ? "a directory" : stat.isFile() ? "a regular file" : "a special file";
    throw new Error(`${path} is ${what}, not a socket (left as it is: move it away or choose another path)`);
  }
  if (probeSocket(path) !== "refused") return;
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw new Error(`cannot remove the stale socket ${path}: ${(error as Error).message}`);
  }
}
