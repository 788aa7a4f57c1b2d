/**
 * libc through bun:ffi, for the few calls Bun has no API for: descriptors and integer socket
 * options (fds.ts), sd_notify and socket activation (systemd.ts), a synchronous unix connect
 * (unix-socket.ts), a UDP socket bound with SO_REUSEPORT (proxy/udp/reuse-port.ts). One symbol
 * table, opened once, on the first call that needs it: a process that needs none of them never
 * opens libc.
 *
 * glibc on Linux only (x86_64 and aarch64 share the constants and struct layouts used here).
 * Where libc.so.6 cannot be opened, `libc()` is null and `requireLibc(need)` throws an Error
 * saying what needs it; each caller chooses which, as its own contract says.
 */
import { dlopen, FFIType, read } from "bun:ffi";

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
/** sizeof(struct sockaddr_un): sa_family (2 bytes) and sun_path (108 bytes). */
export const SOCKADDR_UN_SIZE = 110;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    dup: { args: [FFIType.i32], returns: FFIType.i32 },
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.i64, FFIType.i64], returns: FFIType.i64 },
    prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    clock_gettime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

export type Libc = ReturnType<typeof openLibc>;
let opened: Libc | null | undefined;

/** libc's functions, opened on first use; null where libc.so.6 cannot be opened (not glibc Linux). */
export function libc(): Libc | null {
  if (opened === undefined) {
    try {
      opened = openLibc();
    } catch {
      opened = null;
    }
  }
  return opened;
}

/** libc's functions; throws `libc.so.6 cannot be opened (<need>)` where it cannot be. */
export function requireLibc(need: string): Libc {
  const lib = libc();
  if (lib === null) throw new Error(`libc.so.6 cannot be opened (${need})`);
  return lib;
}

/** errno after a failed call (read before any other libc call); 0 when it cannot be read. */
export function errno(): number {
  const at = opened?.__errno_location() ?? null;
  return at === null ? 0 : read.i32(at, 0);
}

/** errno after a failed call, as [code name, text]: `["EADDRINUSE", "Address already in use"]`. */
export function lastError(): [string, string] {
  const code = errno();
  return [ERRNO_NAMES[code] ?? `errno ${code}`, opened ? String(opened.strerror(code)) : ""];
}

const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 13: "EACCES", 22: "EINVAL", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL" };

/** A struct sockaddr_un for `name` (a path, or a NUL byte and an abstract name); the caller checks that it fits. */
export function sockaddrUn(name: Uint8Array): Uint8Array {
  const address = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  return address;
}
