/**
 * The "old process" of a session handover. Listens on 127.0.0.1:0 and prints `{"port":N}`.
 * Its first accepted connection is paused at once (nothing is read). On the stdin line
 * `handover` it starts new-session.ts with the socket at fd 3; on `close` it closes its own
 * copy the way argv[2] names: exit, terminate, close, end, shutdown, ffi-close, fs-close, none.
 * On `queued` it prints how many bytes wait unread in the socket's receive buffer.
 * Prints one JSON line per step; the child's lines share this stdout.
 */
import type { Socket } from "bun";
import { dlopen, FFIType } from "bun:ffi";
import { closeSync } from "node:fs";

const method = process.argv[2] ?? "exit";
const say = (line: object) => console.log(JSON.stringify(line));
let session: Socket<undefined> | null = null;
/** socket.fd exists in Bun 1.4.5 but not in its types. */
const fdOf = (socket: Socket<undefined>): number => (socket as unknown as { fd: number }).fd;

const listener = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(socket: Socket<undefined>) {
      socket.pause();
      session = socket;
      say({ accepted: fdOf(socket) });
    },
    data(_socket: Socket<undefined>, chunk: Buffer) {
      say({ oldData: chunk.toString() });
    },
    end() {
      say({ oldEnd: true });
    },
    close(_socket: Socket<undefined>, error?: Error) {
      say({ oldClose: error === undefined ? null : String(error) });
    },
    error() {},
  },
});
say({ port: listener.port });

const child = new URL("./new-session.ts", import.meta.url).pathname;
for await (const line of console) {
  if (line === "queued") {
    // FIONREAD: bytes in the kernel's receive buffer that nobody has read yet.
    const count = new Int32Array(1);
    const libc = dlopen("libc.so.6", { ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 } });
    libc.symbols.ioctl(fdOf(session!), 0x541b, count);
    libc.close();
    say({ queued: count[0] });
  } else if (line === "handover") {
    const proc = Bun.spawn([process.execPath, child], { stdio: ["ignore", "inherit", "inherit", fdOf(session!)] });
    say({ spawned: proc.pid });
  } else if (line === "close") {
    listener.stop();
    const socket = session!;
    if (method === "exit") process.exit(0);
    else if (method === "terminate") socket.terminate();
    else if (method === "close") socket.close();
    else if (method === "end") socket.end();
    else if (method === "shutdown") socket.shutdown();
    else if (method === "ffi-close") {
      const libc = dlopen("libc.so.6", { close: { args: [FFIType.i32], returns: FFIType.i32 } });
      say({ closeResult: libc.symbols.close(fdOf(socket)) });
    } else if (method === "fs-close") closeSync(fdOf(socket));
    say({ closed: method });
  }
}
