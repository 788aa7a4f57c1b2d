/**
 * The sockets of a Sentinel watch (sentinel.ts): one long-lived subscription per sentinel
 * (`Link`), and one-question connections (`Query`): `SENTINEL get-master-addr-by-name` to every
 * sentinel, `ROLE` (after AUTH when credentials are known) to a replica being promoted. Handlers are module-level, each socket's state
 * is its `data`, and no handler throws: a peer error closes that socket and is logged once.
 */
import type { Socket, SocketHandler } from "bun";
import { DEFAULTS } from "../../config/defaults.ts";
import type { SentinelConfig } from "../../config/types.ts";
import { encodeCommand, parseResp, type Resp, RespError } from "../../protocol/resp.ts";
import { formatAddress, type Address } from "../../util/address.ts";
import { event } from "../../util/log.ts";
import { masterAddress, promotedTo, switchedTo, type Watch } from "./sentinel.ts";

/**
 * `+switch-master` switches; `+promoted-slave` (the leader saw the replica report role:master,
 * before it reconfigures the other replicas and sends +switch-master) switches too;
 * `+selected-slave` and `+failover-state-wait-promotion` start asking that replica ROLE every
 * DEFAULTS.sentinel.promotionProbe ms, and it is switched to once it answers master: the
 * leader itself only notices at its next INFO of the replica, up to 1 s later.
 */
const CHANNELS = ["+switch-master", "+promoted-slave", "+selected-slave", "+failover-state-wait-promotion"];
const SUBSCRIBE = encodeCommand(["SUBSCRIBE", ...CHANNELS]);

/** One sentinel's +switch-master subscription: its socket, unparsed bytes and reconnect timer. */
export class Link {
  socket: Socket<Link> | null = null;
  buffer: Buffer = Buffer.alloc(0);
  subscribed = false;
  /** Failed since the last time it was subscribed (logged once). */
  failing = false;
  stopped = false;
  /** The AUTH reply is still to come. */
  awaitingAuth = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  readonly key: string;

  constructor(
    readonly watch: Watch,
    readonly address: Address,
  ) {
    this.key = formatAddress(address);
  }

  connect(): void {
    if (this.stopped) return;
    this.buffer = Buffer.alloc(0);
    this.awaitingAuth = this.watch.hello !== null;
    try {
      const pending = dial(this.address, linkHandlers, this);
      pending.then(undefined, (error: unknown) => this.failed(`connect failed (${errorCode(error)})`));
    } catch (error) {
      this.failed(`connect failed (${errorCode(error)})`);
    }
  }

  /** Closes the socket, logs the first failure in a row, and tries again later. */
  failed(reason: string): void {
    const socket = this.socket;
    this.socket = null;
    this.subscribed = false;
    socket?.terminate();
    if (this.stopped) return;
    if (!this.failing) {
      this.failing = true;
      const name = this.watch.backend.name;
      this.watch.log.warn(
        event(`backend ${name}: sentinel ${this.key}: ${reason}; subscribing again every ${DEFAULTS.sentinel.reconnectDelay} ms`, {
          backend: name,
          sentinel: this.key,
          reason,
        }),
      );
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(reconnect, DEFAULTS.sentinel.reconnectDelay, this);
    this.timer.unref();
  }

  /** One complete reply on the subscription. */
  reply(value: Resp): void {
    if (value instanceof RespError) return this.failed(`error reply: ${value.message}`);
    if (this.awaitingAuth) {
      this.awaitingAuth = false;
      return;
    }
    if (!Array.isArray(value) || value.length !== 3) return;
    if (value[0] === "subscribe") {
      this.subscribed = true;
      if (this.failing) {
        this.failing = false;
        const name = this.watch.backend.name;
        this.watch.log.info(event(`backend ${name}: sentinel ${this.key}: subscribed again`, { backend: name, sentinel: this.key }));
      }
      return;
    }
    if (value[0] !== "message" || typeof value[2] !== "string") return;
    const why = `${value[1]} from sentinel ${this.key}`;
    if (value[1] === "+switch-master") {
      const to = switchedTo(value[2], this.watch.config.master);
      if (to !== null) this.watch.switchTo(to, why);
      return;
    }
    const replica = promotedTo(value[2], this.watch.config.master);
    if (replica === null) return;
    if (value[1] === "+promoted-slave") this.watch.switchTo(replica, why, true);
    else this.watch.promoting(replica, why);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.terminate();
  }
}

function reconnect(link: Link): void {
  link.connect();
}

function dial<T>(address: Address, socket: SocketHandler<T, "buffer">, data: T): Promise<Socket<T>> {
  return address.kind === "unix"
    ? Bun.connect({ unix: address.path, socket, data })
    : Bun.connect({ hostname: address.host, port: address.port, socket, data });
}

const linkHandlers: SocketHandler<Link, "buffer"> = {
  binaryType: "buffer",
  open(socket) {
    const link = socket.data;
    if (link.stopped) return void socket.terminate();
    link.socket = socket;
    const hello = link.watch.hello;
    const bytes = hello === null ? SUBSCRIBE : Buffer.concat([hello, SUBSCRIBE]);
    // A few dozen bytes on a fresh socket: the kernel takes them all, or the socket is dead.
    if (socket.write(bytes) < bytes.length) link.failed("write failed");
  },
  data(socket, chunk) {
    const link = socket.data;
    if (link.socket !== socket) return;
    link.buffer = link.buffer.length === 0 ? chunk : Buffer.concat([link.buffer, chunk]);
    try {
      let at = 0;
      for (let reply = parseResp(link.buffer, at); reply !== null && link.socket === socket; reply = parseResp(link.buffer, at)) {
        at = reply.end;
        link.reply(reply.value);
      }
      if (link.socket === socket) link.buffer = link.buffer.subarray(at);
    } catch (error) {
      link.failed(`bad reply: ${(error as Error).message}`);
    }
  },
  close(socket) {
    const link = socket.data;
    if (link.socket === socket) link.failed("connection closed");
  },
  connectError(socket, error) {
    const link = socket.data as Link | undefined;
    if (link !== undefined && link.socket === null) link.failed(`connect failed (${errorCode(error)})`);
  },
  error(socket, error) {
    const link = socket.data as Link | undefined;
    if (link !== undefined && link.socket === socket) link.failed(`socket error (${errorCode(error)})`);
  },
};

// ── Queries ─────────────────────────────────────────────────────────────────────────────────

/** One `get-master-addr-by-name` question to one sentinel. */
class Query {
  socket: Socket<Query> | null = null;
  buffer: Buffer = Buffer.alloc(0);
  done = false;
  /** Replies still to skip before the answer (the AUTH reply). */
  skip: number;
  /** A skipped reply may be an error (AUTH to a node without a password); else it ends the query. */
  skipErrors = false;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly request: Uint8Array,
    skip: number,
    readonly resolve: (answer: Address | null) => void,
    /** The answer a reply gives. */
    readonly read: (reply: Resp) => Address | null = masterAddress,
  ) {
    this.skip = skip;
  }

  finish(answer: Address | null): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.terminate();
    this.resolve(answer);
  }
}

function queryTimedOut(query: Query): void {
  query.finish(null);
}

/** Every sentinel's answer (null for one that failed, timed out or knows no such master), in order. */
export function askAll(config: SentinelConfig, hello: Uint8Array | null): Promise<(Address | null)[]> {
  const ask = encodeCommand(["SENTINEL", "get-master-addr-by-name", config.master]);
  const request = hello === null ? ask : Buffer.concat([hello, ask]);
  return Promise.all(
    config.sentinels.map(
      (address) =>
        new Promise<Address | null>((resolve) => {
          const query = new Query(request, hello === null ? 0 : 1, resolve);
          query.timer = setTimeout(queryTimedOut, config.timeout, query);
          query.timer.unref();
          try {
            dial(address, queryHandlers, query).then(undefined, () => query.finish(null));
          } catch {
            query.finish(null);
          }
        }),
    ),
  );
}

const ROLE = encodeCommand(["ROLE"]);

/**
 * Whether the Redis node at `address` answers ROLE with master (false on any error or
 * timeout). With `hello` (an AUTH command) that is sent first; its reply is skipped whatever it
 * is: a node without a password answers AUTH with an error and ROLE all the same, and one with
 * another password answers ROLE with NOAUTH (false).
 */
export function askRole(address: Address, timeout: number, hello: Uint8Array | null = null): Promise<boolean> {
  return new Promise((resolve) => {
    const query = new Query(
      hello === null ? ROLE : Buffer.concat([hello, ROLE]),
      hello === null ? 0 : 1,
      (answer) => resolve(answer !== null),
      (reply) => (Array.isArray(reply) && reply[0] === "master" ? address : null),
    );
    query.skipErrors = true;
    query.timer = setTimeout(queryTimedOut, timeout, query);
    query.timer.unref();
    try {
      dial(address, queryHandlers, query).then(undefined, () => query.finish(null));
    } catch {
      query.finish(null);
    }
  });
}

const queryHandlers: SocketHandler<Query, "buffer"> = {
  binaryType: "buffer",
  open(socket) {
    const query = socket.data;
    if (query.done) return void socket.terminate();
    query.socket = socket;
    if (socket.write(query.request) < query.request.length) query.finish(null);
  },
  data(socket, chunk) {
    const query = socket.data;
    if (query.done) return;
    query.buffer = query.buffer.length === 0 ? chunk : Buffer.concat([query.buffer, chunk]);
    try {
      let at = 0;
      for (let reply = parseResp(query.buffer, at); reply !== null; reply = parseResp(query.buffer, at)) {
        at = reply.end;
        if (query.skip > 0) {
          query.skip--;
          if (reply.value instanceof RespError && !query.skipErrors) return query.finish(null);
          continue;
        }
        if (reply.value instanceof RespError) return query.finish(null);
        return query.finish(query.read(reply.value));
      }
      query.buffer = query.buffer.subarray(at);
    } catch {
      query.finish(null);
    }
  },
  close(socket) {
    socket.data.finish(null);
  },
  connectError(socket) {
    (socket.data as Query | undefined)?.finish(null);
  },
  error(socket) {
    (socket.data as Query | undefined)?.finish(null);
  },
};

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
}
