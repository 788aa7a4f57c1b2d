/**
 * The "new process" of a session handover: adopts the established TCP socket at fd 3 with
 * `Bun.connect({ fd: 3 })` and answers each chunk with `new:` + the chunk. Commands (as data):
 * - `pause\n`: pauses for 300 ms, then writes `paused, N data events\n` (N counted while paused)
 *   and resumes;
 * - `bye\n`: answers, then closes the socket with end().
 * Prints one JSON line on stdout per event: adopted, end (peer FIN), close.
 */
import type { Socket } from "bun";

interface State {
  paused: boolean;
  whilePaused: number;
}

function say(line: object): void {
  console.log(JSON.stringify(line));
}

const handlers = {
  binaryType: "buffer" as const,
  data(socket: Socket<State>, chunk: Buffer) {
    if (socket.data.paused) socket.data.whilePaused++;
    const text = chunk.toString();
    if (text === "pause\n") {
      socket.data.paused = true;
      socket.pause();
      say({ paused: true });
      setTimeout(() => {
        socket.write(`paused, ${socket.data.whilePaused} data events\n`);
        socket.data.paused = false;
        socket.resume();
      }, 300);
      return;
    }
    socket.write(Buffer.concat([Buffer.from("new:"), chunk]));
    if (text === "bye\n") socket.end();
  },
  end(socket: Socket<State>) {
    say({ end: true });
    socket.write("fin seen\n");
    socket.end();
  },
  close(_socket: Socket<State>, error?: Error) {
    say({ close: error === undefined ? null : String(error) });
    process.exit(0);
  },
  error(_socket: Socket<State>, error: Error) {
    say({ error: String(error) });
  },
};

await Bun.connect({ fd: 3, socket: handlers, data: { paused: false, whilePaused: 0 }, allowHalfOpen: true } as unknown as Parameters<
  typeof Bun.connect<State>
>[0]);
say({ adopted: process.pid });
