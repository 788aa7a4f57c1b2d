/**
 * Redis for the backend tests (the router under test is in router.ts): redis-servers on free
 * ports (`startRedisOn`, from net.ts, restarts a killed target where it was), and a small RESP
 * client over node:net, which can bind a source address (127.0.0.2, …) for source-hash.
 *
 * Everything that opens something is disposable, as in `net.ts`.
 */
import net from "node:net";
import { freePort, HOST, type RedisServer, startRedisOn, within } from "./net.ts";

export { startRedisOn, type RedisServer };

export const hasRedis = ["redis-server", "redis-cli"].every((name) => Bun.which(name) !== null);

// ---------------------------------------------------------------------------------------------
// redis-server

/** `n` redis-servers on free ports. */
export async function startRedises(n: number): Promise<RedisServer[] & AsyncDisposable> {
  const servers: RedisServer[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await startRedisOn(freePort()));
  } catch (error) {
    await Promise.all(servers.map((server) => server.kill()));
    throw error;
  }
  return Object.assign(servers, { [Symbol.asyncDispose]: async () => void (await Promise.all(servers.map((server) => server.kill()))) });
}

// ---------------------------------------------------------------------------------------------
// A RESP client

export type Reply = string | number | null | Error | Reply[];

/** One complete reply at `at`, or null when more bytes are needed. */
function parseReply(buffer: Buffer, at: number): { value: Reply; end: number } | null {
  const eol = buffer.indexOf("\r\n", at);
  if (eol < 0) return null;
  const line = buffer.toString("utf8", at + 1, eol);
  switch (String.fromCharCode(buffer[at]!)) {
    case "+":
      return { value: line, end: eol + 2 };
    case "-":
      return { value: new Error(line), end: eol + 2 };
    case ":":
      return { value: Number(line), end: eol + 2 };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (buffer.length < eol + 2 + n + 2) return null;
      return { value: buffer.toString("utf8", eol + 2, eol + 2 + n), end: eol + 4 + n };
    }
    case "*": {
      const items: Reply[] = [];
      let end = eol + 2;
      for (let i = 0; i < Number(line); i++) {
        const item = parseReply(buffer, end);
        if (item === null) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
  }
  throw new Error(`not a RESP reply: ${JSON.stringify(buffer.toString("latin1", at, at + 40))}`);
}

function command(args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")}`;
}

/**
 * One client connection speaking RESP, one command at a time. `hungUp` turns true when the
 * other side ends or resets the connection; a call then rejects.
 */
export class RedisClient implements AsyncDisposable {
  hungUp = false;
  /** Bytes received in all. */
  bytesIn = 0;
  readonly whenClosed: Promise<void>;
  private buffer = Buffer.alloc(0);
  private pending: { resolve(reply: Reply): void; reject(error: Error): void } | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      const reply = parseReply(this.buffer, 0);
      if (reply === null || this.pending === null) return;
      this.buffer = this.buffer.subarray(reply.end);
      const { resolve } = this.pending;
      this.pending = null;
      resolve(reply.value);
    });
    const hangUp = () => {
      this.hungUp = true;
      this.pending?.reject(new Error("connection closed before the reply"));
      this.pending = null;
    };
    socket.on("end", hangUp);
    socket.on("error", hangUp);
    this.whenClosed = new Promise((resolve) =>
      socket.on("close", () => {
        hangUp();
        resolve();
      }),
    );
  }

  /** Connects to 127.0.0.1:`port`, from `localAddress` when given (any 127.x.y.z works on Linux). */
  static connect(port: number, localAddress?: string): Promise<RedisClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port, localAddress });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RedisClient(socket));
      });
    });
  }

  /** Sends one command; resolves with its reply (bulk strings as UTF-8 text). */
  call(...args: string[]): Promise<Reply> {
    if (this.pending !== null) throw new Error("one command at a time");
    if (this.hungUp) return Promise.reject(new Error("connection closed"));
    const reply = new Promise<Reply>((resolve, reject) => (this.pending = { resolve, reject }));
    this.socket.write(command(args));
    return within(reply, 10_000, `the reply to ${args[0]}`);
  }

  /** The port of the redis-server this connection reaches (`CONFIG GET port`). */
  async serverPort(): Promise<number> {
    const reply = await this.call("CONFIG", "GET", "port");
    if (!Array.isArray(reply) || reply[0] !== "port") throw new Error(`CONFIG GET port replied ${String(reply)}`);
    return Number(reply[1]);
  }

  /** A field of `INFO section`, as a number. */
  async info(section: string, field: string): Promise<number> {
    const text = await this.call("INFO", section);
    const value = new RegExp(`^${field}:(\\d+)`, "m").exec(String(text))?.[1];
    if (value === undefined) throw new Error(`INFO ${section} has no ${field}`);
    return Number(value);
  }

  /** Sends FIN and waits until the connection is closed. */
  async close(): Promise<void> {
    this.socket.end();
    await within(this.whenClosed, 5000, "a client connection to close");
  }

  /** Sends RST: the client is gone (a FIN alone only half-closes: the router keeps the session for the reply). */
  async reset(): Promise<void> {
    this.socket.resetAndDestroy();
    await within(this.whenClosed, 5000, "a client connection to close");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.destroy();
    await within(this.whenClosed, 5000, "a client connection to close");
  }
}

/** A new connection to `port` that runs one command and closes; resolves with the reply. */
export async function once(port: number, args: string[], localAddress?: string): Promise<Reply> {
  await using client = await RedisClient.connect(port, localAddress);
  const reply = await client.call(...args);
  await client.close();
  return reply;
}

/** A new connection to `port` that asks which redis-server it reached, then closes. */
export async function whichServer(port: number, localAddress?: string): Promise<number> {
  await using client = await RedisClient.connect(port, localAddress);
  const served = await client.serverPort();
  await client.close();
  return served;
}

/**
 * Admin connections straight to each Redis (not through the router, opened once so they do
 * not count themselves): `connectionsSince()` gives the connections each server accepted since
 * `mark()`.
 */
export async function connectionCounters(servers: RedisServer[]) {
  const admins = await Promise.all(servers.map((server) => RedisClient.connect(server.port)));
  let marks = await Promise.all(admins.map((admin) => admin.info("stats", "total_connections_received")));
  return {
    async mark(): Promise<void> {
      marks = await Promise.all(admins.map((admin) => admin.info("stats", "total_connections_received")));
    },
    /** Accepted connections per server since the last mark, in the order of `servers`. */
    async connectionsSince(): Promise<number[]> {
      const now = await Promise.all(admins.map((admin) => admin.info("stats", "total_connections_received")));
      return now.map((n, i) => n - marks[i]!);
    },
    /** Clients connected to each server now, this admin connection not counted. */
    async connected(): Promise<number[]> {
      return (await Promise.all(admins.map((admin) => admin.info("clients", "connected_clients")))).map((n) => n - 1);
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await Promise.all(admins.map((admin) => admin[Symbol.asyncDispose]()));
    },
  };
}
