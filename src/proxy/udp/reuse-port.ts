/**
 * A UDP socket bound with SO_REUSEPORT, for workers (`--workers N`): each worker binds its own
 * socket on the shared address and the kernel spreads clients over them by a hash of the
 * client's address and port, so every datagram of one client reaches the same worker (and its
 * flow). Bun.udpSocket ignores `reusePort` (a second bind fails with EADDRINUSE) and node:dgram,
 * which honours it, binds asynchronously and moves fewer datagrams per second; so the socket is
 * made here with socket(2), setsockopt(2) and bind(2) through bun:ffi (util/libc.ts),
 * synchronously, and Bun.udpSocket adopts the descriptor (`{ fd }`).
 *
 * Linux with glibc only; elsewhere `bindReusePort` throws an Error saying so.
 */
import { ptr } from "bun:ffi";
import { parseIp } from "../../util/cidr.ts";
import { AF_INET, AF_INET6, type Libc, lastError, requireLibc, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET } from "../../util/libc.ts";

const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

function c(): Libc {
  return requireLibc("a UDP listener shared by workers needs glibc on Linux");
}

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
  if (fd < 0) throw new Error(`socket(): ${lastError()[1]}`);
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
    const [, text] = lastError();
    lib.close(fd);
    throw new Error(`setsockopt SO_REUSEPORT: ${text}`);
  }
  if (lib.bind(fd, ptr(address), address.length) !== 0) {
    const [code, text] = lastError();
    lib.close(fd);
    throw Object.assign(new Error(`bind: ${text}`), { code, syscall: "bind" });
  }
  return fd;
}

/** Closes a descriptor Bun has not adopted (a bind that Bun.udpSocket then refused). */
export function closeDescriptor(fd: number): void {
  c().close(fd);
}
