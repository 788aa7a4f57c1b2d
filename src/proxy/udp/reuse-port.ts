/**
 * A UDP socket bound with SO_REUSEPORT, for workers (`--workers N`): each worker binds its own
 * socket on the shared address and the kernel spreads clients over them by a hash of the
 * client's address and port, so every datagram of one client reaches the same worker (and its
 * flow). Bun.udpSocket ignores `reusePort` (a second bind fails with EADDRINUSE) and node:dgram,
 * which honours it, binds asynchronously and moves fewer datagrams per second; so the socket is
 * made here with socket(2), setsockopt(2) and bind(2) through bun:ffi, synchronously, and
 * Bun.udpSocket adopts the descriptor (`{ fd }`).
 *
 * Linux with glibc only; elsewhere `bindReusePort` throws an Error saying so.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { parseIp } from "../../util/cidr.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

let libc: ReturnType<typeof openLibc> | null | undefined;

function c(): ReturnType<typeof openLibc> {
  if (libc === undefined) {
    try {
      libc = openLibc();
    } catch {
      libc = null;
    }
  }
  if (libc === null) throw new Error("libc.so.6 cannot be opened (a UDP listener shared by workers needs glibc on Linux)");
  return libc;
}

/** errno after a failed call, as [code name, text]: `["EADDRINUSE", "Address already in use"]`. */
function lastError(lib: ReturnType<typeof openLibc>): [string, string] {
  const at = lib.__errno_location();
  const code = at === null ? 0 : read.i32(at, 0);
  return [ERRNO_NAMES[code] ?? `errno ${code}`, String(lib.strerror(code))];
}

const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 13: "EACCES", 22: "EINVAL", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL" };

/**
 * A non-blocking UDP socket with SO_REUSEPORT bound to `host:port` (an IP literal; "::" also
 * takes IPv4, as Bun binds it). Returns its descriptor for `Bun.udpSocket({ fd })`. Throws an
 * Error naming the failed call.
 */
export function bindReusePort(host: string, port: number): number {
  const ip = parseIp(host);
  if (ip === null) throw new Error(`${host} is not an IP address (a UDP listener shared by workers binds an IP)`);
  const lib = c();
  const v6 = ip.length === 16;
  const fd = lib.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket(): ${lastError(lib)[1]}`);
  const one = new Int32Array([1]);
  const zero = new Int32Array([0]);
  const address = v6 ? new Uint8Array(28) : new Uint8Array(16);
  const view = new DataView(address.buffer);
  view.setUint16(0, v6 ? AF_INET6 : AF_INET, true); // sa_family: host order
  view.setUint16(2, port); // sin_port: network order
  address.set(ip, v6 ? 8 : 4);
  if (
    lib.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ptr(one), 4) !== 0 ||
    lib.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, ptr(one), 4) !== 0 ||
    (v6 && lib.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, ptr(zero), 4) !== 0)
  ) {
    const [, text] = lastError(lib);
    lib.close(fd);
    throw new Error(`setsockopt SO_REUSEPORT: ${text}`);
  }
  if (lib.bind(fd, ptr(address), address.length) !== 0) {
    const [code, text] = lastError(lib);
    lib.close(fd);
    throw Object.assign(new Error(`bind: ${text}`), { code, syscall: "bind" });
  }
  return fd;
}

/** Closes a descriptor Bun has not adopted (a bind that Bun.udpSocket then refused). */
export function closeDescriptor(fd: number): void {
  c().close(fd);
}
