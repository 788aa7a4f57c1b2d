/** A NOTIFY_SOCKET reader for tests: a unix datagram socket bound through bun:ffi (Bun cannot bind one). */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { rmSync } from "node:fs";
import { notifyAddress } from "../../src/util/systemd.ts";
import { waitFor } from "./net.ts";

const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
}).symbols;

const SOCK_DGRAM_NONBLOCK_CLOEXEC = 2 | 0o4000 | 0o2000000;

/** A NOTIFY_SOCKET as systemd binds one: AF_UNIX, SOCK_DGRAM, at `name` (a path, or "@abstract"). */
export class NotifyReader {
  readonly fd: number;
  constructor(readonly name: string) {
    const target = notifyAddress(name)!;
    this.fd = libc.socket(1, SOCK_DGRAM_NONBLOCK_CLOEXEC, 0);
    if (this.fd < 0 || libc.bind(this.fd, ptr(target.address), target.length) !== 0) throw new Error(`cannot bind ${name}`);
  }

  /** The next datagram's bytes, waiting up to `ms`. */
  async next(ms = 2000): Promise<string> {
    const buffer = new Uint8Array(4096);
    let got = -1;
    await waitFor(() => (got = Number(libc.recv(this.fd, ptr(buffer), buffer.length, 0))) >= 0, ms, `a datagram on ${this.name}`);
    return Buffer.from(buffer.subarray(0, got)).toString();
  }

  close(): void {
    libc.close(this.fd);
    if (!this.name.startsWith("@")) rmSync(this.name, { force: true });
  }
}
