/**
 * Adopts the listening TCP socket at fd 3 once a line arrives on stdin (so the test can queue
 * connections in the kernel first). Greets each connection with `child PID\n`, then echoes.
 * Prints `{"adopted":PID,"port":…}` on stdout once it listens.
 */
import type { Socket } from "bun";

const handlers = {
  open(socket: Socket<undefined>) {
    socket.write(`child ${process.pid}\n`);
  },
  data(socket: Socket<undefined>, chunk: Buffer) {
    socket.write(chunk);
  },
  error() {},
};

const reader = Bun.stdin.stream().getReader();
await reader.read();
reader.releaseLock();
const listener = Bun.listen({ fd: 3, socket: handlers } as unknown as Parameters<typeof Bun.listen>[0]);
console.log(JSON.stringify({ adopted: process.pid, port: (listener as { port?: number }).port ?? null }));
