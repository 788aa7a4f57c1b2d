/**
 * File descriptors below what Bun exposes, through bun:ffi and glibc: keeping a copy of a
 * listening socket (dup), taking a descriptor from another process (pidfd_getfd, Linux 5.6+),
 * letting a child do that (prctl PR_SET_PTRACER under Yama), and integer socket options
 * (TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT) that Bun has no call for.
 *
 * libc is opened on first use (libc.ts); where it cannot be (not glibc Linux) every call fails
 * with an Error naming what is missing, and callers say what they cannot do.
 */
import { ptr } from "bun:ffi";
import { type Libc, requireLibc } from "./libc.ts";

const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;
const PR_SET_PTRACER = 0x59616d61;

export { SOL_SOCKET } from "./libc.ts";
export const SO_KEEPALIVE = 9;
export const IPPROTO_TCP = 6;
export const TCP_KEEPIDLE = 4;
export const TCP_KEEPINTVL = 5;
export const TCP_KEEPCNT = 6;
export const TCP_USER_TIMEOUT = 18;

function c(): Libc {
  return requireLibc("descriptor passing needs glibc on Linux");
}

/** A new descriptor for the same open socket; Bun knows nothing of it (no events, no close). */
export function dup(fd: number): number {
  const copy = c().dup(fd);
  if (copy < 0) throw new Error(`dup(${fd}) failed`);
  return copy;
}

/** Closes a descriptor Bun does not own (a dup, an adopted copy never handed to Bun). */
export function closeFd(fd: number): void {
  c().close(fd);
}

/** A pidfd for `pid`, to take descriptors from it; close it with closeFd. */
export function pidfdOpen(pid: number): number {
  const fd = Number(c().syscall(SYS_PIDFD_OPEN, pid, 0, 0));
  if (fd < 0) throw new Error(`pidfd_open(${pid}) failed (Linux 5.3 or later is needed)`);
  return fd;
}

/**
 * A copy, in this process, of descriptor `fd` of the process behind `pidfd` (its close-on-exec
 * flag set). Needs ptrace access to that process: the same user, and under Yama
 * ptrace_scope 1 its `allowPtraceBy(this pid)`.
 */
export function pidfdGetfd(pidfd: number, fd: number): number {
  const copy = Number(c().syscall(SYS_PIDFD_GETFD, pidfd, fd, 0));
  if (copy < 0) throw new Error(`pidfd_getfd(${fd}) failed (Linux 5.6 or later and ptrace access to the old process are needed)`);
  return copy;
}

/** Lets `pid` (a child) ptrace-attach to this process under Yama ptrace_scope 1, as pidfd_getfd needs. */
export function allowPtraceBy(pid: number): void {
  c().prctl(PR_SET_PTRACER, pid, 0, 0, 0); // EINVAL without Yama: nothing to allow then
}

/** setsockopt(fd, level, option, int). Throws with the option's name on failure. */
export function setIntOption(fd: number, level: number, option: number, value: number, name: string): void {
  const buffer = new Int32Array([value]);
  if (c().setsockopt(fd, level, option, ptr(buffer), 4) !== 0) throw new Error(`setsockopt ${name} failed`);
}

/** getsockopt(fd, level, option) as an int; null on failure. */
export function getIntOption(fd: number, level: number, option: number): number | null {
  const buffer = new Int32Array(1);
  const length = new Uint32Array([4]);
  return c().getsockopt(fd, level, option, ptr(buffer), ptr(length)) === 0 ? buffer[0]! : null;
}
