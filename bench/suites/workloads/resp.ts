/** A tiny RESP client for the correctness check: exact bytes, one connection, bounded time. */
import { createConnection } from "node:net";
import { HOST } from "../../runner/net.ts";

export type Reply = Buffer | string | number | null | Error;

/** Encodes one command as a RESP array of bulk strings. */
export function encode(args: (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === "string" ? Buffer.from(arg) : Buffer.from(arg);
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** Parses one reply at `at`; returns it and the next offset, or undefined if incomplete. */
function parseReply(buf: Buffer, at: number): [Reply, number] | undefined {
  const eol = buf.indexOf("\r\n", at);
  if (eol < 0) return undefined;
  const line = buf.toString("latin1", at + 1, eol);
  switch (buf[at]) {
    case 0x2b: // +
      return [line, eol + 2];
    case 0x2d: // -
      return [new Error(line), eol + 2];
    case 0x3a: // :
      return [Number(line), eol + 2];
    case 0x24: {
      // $
      const len = Number(line);
      if (len < 0) return [null, eol + 2];
      const end = eol + 2 + len;
      if (buf.length < end + 2) return undefined;
      return [buf.subarray(eol + 2, end), end + 2];
    }
    default:
      throw new Error(`unexpected RESP type byte ${buf[at]}`);
  }
}

/** Sends `commands` pipelined to 127.0.0.1:port and returns one reply per command. */
export function exchange(port: number, commands: (string | Uint8Array)[][], timeoutMs = 5000): Promise<Reply[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: HOST, port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error(`no complete reply from port ${port} in ${timeoutMs} ms`)), timeoutMs);
    function fail(err: Error): void {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    }
    sock.on("error", fail);
    sock.on("close", () => fail(new Error(`port ${port} closed the connection early`)));
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const replies: Reply[] = [];
      let at = 0;
      try {
        while (replies.length < commands.length) {
          const r = parseReply(buf, at);
          if (!r) return;
          replies.push(r[0]);
          at = r[1];
        }
      } catch (err) {
        return fail(err as Error);
      }
      clearTimeout(timer);
      sock.removeAllListeners("close");
      sock.destroy();
      resolve(replies);
    });
    sock.write(Buffer.concat(commands.map(encode)));
  });
}
