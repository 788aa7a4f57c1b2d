/**
 * systemd integration without libsystemd: readiness notifications (sd_notify(3)) and socket
 * activation (sd_listen_fds(3)).
 *
 * Bun has no unix datagram client and no getsockname(), so both go through `bun:ffi` to libc
 * (libc.ts). libc is opened lazily, on the first call that needs it: a process started without
 * NOTIFY_SOCKET (or LISTEN_FDS) never loads ffi. Nothing here throws: a notification that cannot
 * be sent returns false, an fd that cannot be inspected gives null.
 *
 * Linux only (x86_64 and aarch64 share the struct layouts used here).
 */
import { ptr } from "bun:ffi";
import type { Address } from "./address.ts";
import { getIntOption } from "./fds.ts";
import { AF_INET, AF_INET6, AF_UNIX, libc, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_STREAM, SOCKADDR_UN_SIZE, SOL_SOCKET, sockaddrUn } from "./libc.ts";

const MSG_NOSIGNAL = 0x4000;
const CLOCK_MONOTONIC = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
/** The first descriptor systemd passes (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;

// ---------------------------------------------------------------------------------------------
// Notifications

/**
 * The sockaddr_un for a NOTIFY_SOCKET value: a path, or an abstract name when it starts with
 * "@" (the "@" becomes a NUL byte). Null when it is empty, too long or not a unix socket.
 */
export function notifyAddress(value: string): { address: Uint8Array; length: number } | null {
  if (value === "" || !(value.startsWith("/") || value.startsWith("@"))) return null;
  const name = Buffer.from(value);
  const abstract = value.startsWith("@");
  if (abstract) name[0] = 0;
  // A path needs its NUL terminator; an abstract name is exactly its bytes.
  const length = 2 + name.length + (abstract ? 0 : 1);
  if (length > SOCKADDR_UN_SIZE) return null;
  return { address: sockaddrUn(name), length };
}

/**
 * Sends `state` (newline-separated `KEY=value` lines, sd_notify(3)) to `$NOTIFY_SOCKET` as one
 * datagram. False when NOTIFY_SOCKET is unset or invalid, or the datagram was not sent (no
 * service manager listening); it never throws.
 */
export function notify(state: string, env: Record<string, string | undefined> = process.env): boolean {
  const target = notifyAddress(env.NOTIFY_SOCKET ?? "");
  if (target === null) return false;
  const c = libc();
  if (c === null) return false;
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    const message = Buffer.from(state);
    if (message.length === 0) return false;
    const sent = c.sendto(fd, ptr(message), message.length, MSG_NOSIGNAL, ptr(target.address), target.length);
    return Number(sent) === message.length;
  } catch {
    return false;
  } finally {
    c.close(fd);
  }
}

/** READY=1: start-up is finished (listeners bound); also ends a reload begun with reloading(). */
export function ready(env?: Record<string, string | undefined>): boolean {
  return notify("READY=1", env);
}

/**
 * RELOADING=1 with MONOTONIC_USEC (what Type=notify-reload, systemd ≥ 253, requires): a reload
 * has begun; send ready() once it is done.
 */
export function reloading(env?: Record<string, string | undefined>): boolean {
  const now = monotonicUsec();
  return notify(now === null ? "RELOADING=1" : `RELOADING=1\nMONOTONIC_USEC=${now}`, env);
}

/** STOPPING=1: the drain has begun. */
export function stopping(env?: Record<string, string | undefined>): boolean {
  return notify("STOPPING=1", env);
}

/** MAINPID=pid: after an upgrade in place, the new process is the service's main process. */
export function mainPid(pid: number, env?: Record<string, string | undefined>): boolean {
  return notify(`MAINPID=${pid}`, env);
}

/** STATUS=text: one line shown by `systemctl status`. */
export function status(text: string, env?: Record<string, string | undefined>): boolean {
  return notify(`STATUS=${text.replace(/\n/g, " ")}`, env);
}

/** CLOCK_MONOTONIC in microseconds, as the decimal string systemd expects; null without libc. */
export function monotonicUsec(): string | null {
  const c = libc();
  if (c === null) return null;
  const timespec = new BigInt64Array(2); // tv_sec, tv_nsec
  if (c.clock_gettime(CLOCK_MONOTONIC, ptr(timespec)) !== 0) return null;
  return String(timespec[0]! * 1_000_000n + timespec[1]! / 1000n);
}

/**
 * The interval at which to send WATCHDOG=1, in milliseconds (half of WATCHDOG_USEC, as
 * sd_watchdog_enabled(3) advises), or 0 when the service manager expects none (WatchdogSec=
 * unset, or WATCHDOG_PID names another process).
 */
export function watchdogInterval(env: Record<string, string | undefined> = process.env, pid = process.pid): number {
  const usec = Number(env.WATCHDOG_USEC ?? "");
  if (!Number.isSafeInteger(usec) || usec <= 0) return 0;
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return 0;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * Sends WATCHDOG=1 every watchdogInterval() ms (an unref'd timer: it keeps nothing alive).
 * Returns the function that stops it; a no-op when no watchdog is expected.
 */
export function startWatchdog(env: Record<string, string | undefined> = process.env): () => void {
  const interval = watchdogInterval(env);
  if (interval === 0) return () => {};
  const timer = setInterval(() => notify("WATCHDOG=1", env), interval);
  timer.unref();
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------------------------------------
// Socket activation

export interface ListenFd {
  fd: number;
  /** From LISTEN_FDNAMES (FileDescriptorName= in the .socket unit); "unknown" when not given. */
  name: string;
}

/**
 * The sockets the service manager passed (sd_listen_fds_with_names(3)): LISTEN_FDS descriptors
 * from fd 3, when LISTEN_PID is this process. Empty otherwise, or when the variables are
 * malformed. A LISTEN_FDNAMES whose count does not match is ignored (every name "unknown").
 *
 * Like sd_listen_fds(unset_environment = 1), it removes LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES from `env`, so processes started later (workers, a new binary) do not
 * mistake them for their own. And like sd_listen_fds, it sets FD_CLOEXEC on each descriptor:
 * a process started later gets a listener only when it is handed over on purpose (Bun.spawn
 * `stdio[n]`, which dup2()s it and so clears the flag on the copy).
 */
export function listenFds(env: Record<string, string | undefined> = process.env, pid = process.pid): ListenFd[] {
  const { LISTEN_PID: listenPid, LISTEN_FDS: listenCount, LISTEN_FDNAMES: listenNames } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenPid !== String(pid) || listenCount === undefined || !/^\d+$/.test(listenCount)) return [];
  const count = Number(listenCount);
  const names = listenNames?.split(":") ?? [];
  const named = names.length === count;
  const fds: ListenFd[] = [];
  for (let n = 0; n < count; n++) {
    const fd = LISTEN_FDS_START + n;
    setCloseOnExec(fd);
    fds.push({ fd, name: named && names[n] !== "" ? names[n]! : "unknown" });
  }
  return fds;
}

/** Sets FD_CLOEXEC on `fd`; false when it cannot (not open, no libc). */
export function setCloseOnExec(fd: number): boolean {
  const c = libc();
  if (c === null) return false;
  const flags = c.fcntl(fd, F_GETFD, 0);
  if (flags < 0) return false;
  return (flags & FD_CLOEXEC) !== 0 || c.fcntl(fd, F_SETFD, flags | FD_CLOEXEC) === 0;
}

export interface SocketInfo {
  /** The bound address (getsockname): tcp host and port, or a unix path ("@name" for an abstract one). */
  address: Address;
  type: "stream" | "dgram" | "other";
  /** listen() was called on it (SO_ACCEPTCONN). */
  listening: boolean;
}

/**
 * What socket `fd` is: its bound address, type and whether it listens, so an inherited
 * descriptor can be matched with a configured listener by address when the names do not
 * match. Null when `fd` is not an AF_INET, AF_INET6 or AF_UNIX socket.
 */
export function socketInfo(fd: number): SocketInfo | null {
  const c = libc();
  if (c === null) return null;
  const storage = new Uint8Array(128); // sizeof(struct sockaddr_storage)
  const length = new Uint32Array([storage.length]);
  if (c.getsockname(fd, ptr(storage), ptr(length)) !== 0) return null;
  const address = decodeSockaddr(storage, length[0]!);
  if (address === null) return null;
  const type = getIntOption(fd, SOL_SOCKET, SO_TYPE);
  return {
    address,
    type: type === SOCK_STREAM ? "stream" : type === SOCK_DGRAM ? "dgram" : "other",
    listening: getIntOption(fd, SOL_SOCKET, SO_ACCEPTCONN) === 1,
  };
}

/** A struct sockaddr (as getsockname fills it) as an Address. */
export function decodeSockaddr(bytes: Uint8Array, length: number): Address | null {
  if (length < 2) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const family = view.getUint16(0, true);
  if (family === AF_INET && length >= 8) {
    return { kind: "tcp", host: Array.from(bytes.subarray(4, 8)).join("."), port: view.getUint16(2, false) };
  }
  if (family === AF_INET6 && length >= 24) {
    const groups = Array.from({ length: 8 }, (_, n) => view.getUint16(8 + 2 * n, false).toString(16));
    // URL normalises an IPv6 address to its shortest form ("::1").
    const host = new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
    return { kind: "tcp", host, port: view.getUint16(2, false) };
  }
  if (family === AF_UNIX) {
    const path = bytes.subarray(2, length);
    if (path.length > 0 && path[0] === 0) return { kind: "unix", path: `@${Buffer.from(path.subarray(1)).toString()}` };
    const end = path.indexOf(0);
    return { kind: "unix", path: Buffer.from(end < 0 ? path : path.subarray(0, end)).toString() };
  }
  return null;
}
