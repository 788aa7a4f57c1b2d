/**
 * Test helpers: peers that speak plain TCP on loopback (echo, source/sink, slow reader,
 * half-closer, resetter are all a `Peer` with a behaviour), a logger that keeps its lines, polling with a deadline, fd counting, and process helpers.
 *
 * Every helper that opens something returns an object with `[Symbol.asyncDispose]`, so a test
 * writes `await using x = ...` and the thing is closed even when an assertion fails.
 */
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import { createConsola, type LogObject } from "consola";
import { readdirSync } from "node:fs";

export const HOST = "127.0.0.1";
export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Waiting

/** Polls `condition` every 10 ms until it is truthy; throws naming `what` after `ms`. */
export async function waitFor(condition: () => unknown, ms = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/**
 * For a 1 s timeout swept every 100 ms by a router in this process: lets a sweep note the clock
 * after `lastEvent` (performance.now() of the event), stalls the event loop until 1.3 s after
 * it, and waits for `endedAt()` (0 until the close). The close comes never before the timeout,
 * and within 500 ms of the loop resuming (counted sweeps would need ten more).
 */
export async function expectTimeoutAcrossStall(lastEvent: number, endedAt: () => number, what: string): Promise<void> {
  await Bun.sleep(250);
  while (performance.now() - lastEvent < 1300); // the stall
  const resumed = performance.now();
  await waitFor(() => endedAt() > 0, 5000, what);
  if (endedAt() - lastEvent < 1000) throw new Error(`${what}: after ${endedAt() - lastEvent} ms, before the 1 s timeout`);
  if (endedAt() - resumed >= 500) throw new Error(`${what}: ${endedAt() - resumed} ms after the loop resumed (counted sweeps?)`);
}

/** Resolves with the promise's value, or rejects naming `what` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Bytes

/**
 * 1,000,003 random bytes (a prime length, so chunk boundaries never line up with the pattern's
 * and a reordered or repeated chunk changes the hash). Streams repeat it from an offset.
 */
export const PATTERN: Buffer = Buffer.from(crypto.getRandomValues(new Uint8Array(1_000_003)));

export function sha256(data: Uint8Array | string): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

/** `n` pattern bytes starting at `offset` (wrapping), as one buffer. For small payloads. */
export function patternBytes(n: number, offset = 0): Buffer {
  const out = Buffer.allocUnsafe(n);
  let filled = 0;
  while (filled < n) {
    const start = (offset + filled) % PATTERN.length;
    const take = Math.min(n - filled, PATTERN.length - start);
    PATTERN.copy(out, filled, start, start + take);
    filled += take;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Peers: one socket of a test client or test server, with its own write queue

export interface Behaviour {
  /** Keep received bytes (for `received()`); off for big transfers, which only hash. Default true. */
  keep?: boolean;
  open?(peer: Peer): void;
  data?(peer: Peer, chunk: Buffer): void;
  /** The other side sent FIN. */
  end?(peer: Peer): void;
}

const STREAM_CHUNK = 256 * 1024;

/**
 * One end of a TCP connection under test. Writes go through its own queue, flushed on drain
 * (Bun's write() keeps nothing back). It counts and hashes what it sends and receives.
 */
export class Peer {
  socket!: Socket<Peer>;
  readonly chunks: Buffer[] = [];
  bytesIn = 0;
  bytesOut = 0;
  readonly hashIn = new Bun.CryptoHasher("sha256");
  readonly hashOut = new Bun.CryptoHasher("sha256");
  /** The other side sent FIN (seen as `end`, or as a clean `close` after our own FIN: Bun reports it that way). */
  ended = false;
  /** We sent FIN. */
  shutdownSent = false;
  closed = false;
  closeError: Error | undefined;
  readonly whenClosed: Promise<void>;
  private resolveClosed!: () => void;
  private queue: Uint8Array[] = [];
  private streamLeft = 0;
  private streamOffset = 0;
  private shutdownWanted = false;
  private endWanted = false;
  private streamDone: (() => void) | null = null;

  constructor(readonly behaviour: Behaviour) {
    this.whenClosed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** The other side ended the connection: FIN, reset or close. */
  get hungUp(): boolean {
    return this.ended || this.closed;
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.received().toString("utf8");
  }

  /** Bytes queued here, not yet taken by the kernel. */
  get queued(): number {
    return this.queue.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  write(data: Uint8Array | string): void {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    this.hashOut.update(bytes);
    this.bytesOut += bytes.length;
    this.queue.push(bytes);
    this.flush();
  }

  /** Sends `total` pattern bytes, as fast as the peer takes them. Resolves once all are with the kernel. */
  stream(total: number, offset = 0): Promise<void> {
    this.streamLeft = total;
    this.streamOffset = offset % PATTERN.length;
    const done = new Promise<void>((resolve) => (this.streamDone = resolve));
    this.flush();
    return done;
  }

  /** Sends FIN once everything queued and streamed is written. */
  shutdown(): void {
    this.shutdownWanted = true;
    this.flush();
  }

  /** Closes the whole socket once everything queued is written. */
  end(): void {
    this.endWanted = true;
    this.flush();
  }

  /** Sends RST. */
  terminate(): void {
    if (!this.closed) this.socket.terminate();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  flush(): void {
    if (this.closed) return;
    while (this.queue.length > 0) {
      const chunk = this.queue[0]!;
      const written = this.socket.write(chunk);
      if (written < 0) return;
      if (written < chunk.length) {
        this.queue[0] = chunk.subarray(written);
        return;
      }
      this.queue.shift();
    }
    while (this.streamLeft > 0) {
      const take = Math.min(this.streamLeft, STREAM_CHUNK, PATTERN.length - this.streamOffset);
      const chunk = PATTERN.subarray(this.streamOffset, this.streamOffset + take);
      const written = this.socket.write(chunk);
      if (written <= 0) return;
      this.hashOut.update(chunk.subarray(0, written));
      this.bytesOut += written;
      this.streamLeft -= written;
      this.streamOffset = (this.streamOffset + written) % PATTERN.length;
      if (written < take) return;
    }
    if (this.streamDone !== null) {
      const done = this.streamDone;
      this.streamDone = null;
      done();
    }
    if (this.shutdownWanted) {
      this.shutdownWanted = false;
      this.shutdownSent = true;
      this.socket.shutdown();
    }
    if (this.endWanted) {
      this.endWanted = false;
      this.socket.end();
    }
  }

  onData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    this.hashIn.update(chunk);
    if (this.behaviour.keep !== false) this.chunks.push(chunk);
    this.behaviour.data?.(this, chunk);
  }

  onEnd(): void {
    this.ended = true;
    this.behaviour.end?.(this);
  }

  onClose(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = error;
    if (error === undefined && this.shutdownSent) this.ended = true;
    this.resolveClosed();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.closed) {
      this.socket.terminate();
      await within(this.whenClosed, 2000, "a test socket to close");
    }
  }
}

const peerHandlers = {
  binaryType: "buffer" as const,
  data(socket: Socket<Peer>, chunk: Buffer) {
    socket.data.onData(chunk);
  },
  drain(socket: Socket<Peer>) {
    socket.data.flush();
  },
  end(socket: Socket<Peer>) {
    socket.data.onEnd();
  },
  close(socket: Socket<Peer>, error?: Error) {
    socket.data.onClose(error);
  },
  error(socket: Socket<Peer>, error: Error) {
    socket.data.closeError ??= error;
  },
};

// ---------------------------------------------------------------------------------------------
// Servers

export class Server {
  readonly peers: Peer[] = [];
  listener!: TCPSocketListener<unknown> | UnixSocketListener<unknown>;
  constructor(readonly behaviour: Behaviour) {}

  get port(): number {
    return (this.listener as TCPSocketListener<unknown>).port;
  }

  /** `127.0.0.1:PORT`, for `to`. */
  get address(): string {
    return `${HOST}:${this.port}`;
  }

  /** Resolves with the `n`th accepted connection (0-based). */
  async peer(n = 0, ms = 5000): Promise<Peer> {
    await waitFor(() => this.peers.length > n, ms, `server connection #${n}`);
    return this.peers[n]!;
  }

  async stop(): Promise<void> {
    this.listener.stop(true);
    for (const peer of this.peers) if (!peer.closed) peer.socket.terminate();
    await within(Promise.all(this.peers.map((peer) => peer.whenClosed)), 2000, "server connections to close");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

const serverHandlers = {
  ...peerHandlers,
  open(socket: Socket<Peer>) {
    const server = socket.data as unknown as Server;
    const peer = new Peer(server.behaviour);
    peer.socket = socket;
    socket.data = peer;
    server.peers.push(peer);
    server.behaviour.open?.(peer);
  },
};

/** A server on 127.0.0.1:0 (or another port or host, or a unix path) whose connections follow `behaviour`. */
export function listen(behaviour: Behaviour = {}, where: { unix?: string; hostname?: string; port?: number } = {}): Server {
  const server = new Server(behaviour);
  const common = { socket: serverHandlers, data: server as unknown, allowHalfOpen: true };
  server.listener =
    where.unix !== undefined ? Bun.listen({ ...common, unix: where.unix }) : Bun.listen({ ...common, hostname: where.hostname ?? HOST, port: where.port ?? 0 });
  return server;
}

/** Echoes every byte; answers FIN with FIN once the echo is written. */
export const echo: Behaviour = {
  data: (peer, chunk) => peer.write(chunk),
  end: (peer) => peer.shutdown(),
};

/** Echoes like `echo` but keeps nothing (for big transfers). */
export const bulkEcho: Behaviour = { ...echo, keep: false };

/** Sends `bytes` pattern bytes to whoever connects, reads and hashes everything, FIN after its own stream. */
export function source(bytes: number): Behaviour {
  return {
    keep: false,
    open: (peer) => void peer.stream(bytes).then(() => peer.shutdown()),
  };
}

/** Reads and hashes everything; answers FIN with FIN. */
export const sink: Behaviour = { keep: false, end: (peer) => peer.shutdown() };

/** Half-closer: reads until the client's FIN, then answers `reply(received)` and sends its own FIN. */
export function halfCloser(reply: (received: Buffer) => string | Uint8Array): Behaviour {
  return {
    end: (peer) => {
      peer.write(reply(peer.received()));
      peer.shutdown();
    },
  };
}

/** Resetter: sends RST as soon as it has read anything. */
export const resetter: Behaviour = { data: (peer) => peer.terminate() };

/** Slow reader: stops reading as soon as the connection opens (resume with `peer.resume()`). */
export const slowReader: Behaviour = { keep: false, open: (peer) => peer.pause() };

// ---------------------------------------------------------------------------------------------
// Clients

const clientHandlers = {
  ...peerHandlers,
  open() {},
  connectError(socket: Socket<Peer>, error: Error) {
    socket.data.onClose(error);
  },
};

/** Connects to a port on 127.0.0.1 (or `{ unix }`, or `{ hostname, port }`). Resolves once open. */
export async function dial(to: number | { port: number; hostname?: string } | { unix: string }, behaviour: Behaviour = {}): Promise<Peer> {
  const peer = new Peer(behaviour);
  const common = { socket: clientHandlers, data: peer, allowHalfOpen: true };
  const where = typeof to === "number" ? { hostname: HOST, port: to } : "unix" in to ? { unix: to.unix } : { hostname: to.hostname ?? HOST, port: to.port };
  peer.socket = await Bun.connect({ ...common, ...where } as Parameters<typeof Bun.connect<Peer>>[0]);
  behaviour.open?.(peer);
  return peer;
}

// ---------------------------------------------------------------------------------------------
// The forwarder under test

export interface LogLines {
  lines: string[];
  /** Lines that contain `text`. */
  matching(text: string): string[];
}

/** A consola logger (at debug unless told) that keeps `LEVEL message` lines in memory instead of printing them. */
export function captureLogger(level = 4) {
  const lines: string[] = [];
  const logger = createConsola({
    level,
    reporters: [
      {
        log(entry: LogObject) {
          lines.push(`${entry.type} ${entry.args.map(String).join(" ")}`);
        },
      },
    ],
  });
  return { logger, lines, matching: (text: string) => lines.filter((line) => line.includes(text)) };
}

// ---------------------------------------------------------------------------------------------
// Machine

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
/** Waits until something accepts connections on `port` (a forwarder started in its own process). */
export async function waitForListening(port: number, ms: number): Promise<void> {
  await waitFor(
    async () => {
      try {
        (await dial(port)).terminate();
        return true;
      } catch {
        return false;
      }
    },
    ms,
    "the forwarder to listen",
  );
}

export function freePort(): number {
  const probe = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** True if this machine can listen and connect on [::1]. */
export async function hasIPv6Loopback(): Promise<boolean> {
  try {
    const probe = Bun.listen({ hostname: "::1", port: 0, socket: { data() {} } });
    probe.stop(true);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

export class Child implements AsyncDisposable {
  stderrText = "";
  stdoutText = "";
  private readers: Promise<void>[];

  constructor(readonly proc: Bun.Subprocess<"ignore", "pipe", "pipe">) {
    this.readers = [this.collect(proc.stdout, "stdoutText"), this.collect(proc.stderr, "stderrText")];
  }

  private async collect(stream: ReadableStream<Uint8Array>, into: "stdoutText" | "stderrText"): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this[into] += decoder.decode(chunk, { stream: true });
  }

  /** Waits for exit (bounded) and for the output to be read to the end. */
  async exited(ms = 10_000): Promise<number> {
    const code = await within(this.proc.exited, ms, `process ${this.proc.pid} to exit`);
    await within(Promise.all(this.readers), 2000, "process output");
    return code;
  }

  /** Waits until stderr matches `pattern`; returns the match. */
  async stderrMatch(pattern: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    await waitFor(() => pattern.test(this.stderrText) || this.proc.exitCode !== null, ms, `stderr to match ${pattern}`);
    const match = pattern.exec(this.stderrText);
    if (match === null) throw new Error(`process exited (${this.proc.exitCode}) before stderr matched ${pattern}:\n${this.stderrText}`);
    return match;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGKILL");
      await within(this.proc.exited, 5000, `process ${this.proc.pid} to die`);
    }
  }
}

export const ROOT = new URL("../..", import.meta.url).pathname;

export function spawn(cmd: string[], env: Record<string, string> = {}): Child {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return new Child(proc);
}

/** `bun run src/cli.ts ...args`. */
export function spawnCli(args: string[]): Child {
  return spawn([process.execPath, "run", "src/cli.ts", ...args]);
}

/** Runs a command to completion (bounded); returns exit code and output. */
export async function run(cmd: string[], ms = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  await using child = spawn(cmd);
  const code = await child.exited(ms);
  return { code, stdout: child.stdoutText, stderr: child.stderrText };
}

export interface RedisServer extends AsyncDisposable {
  port: number;
  child: Child;
  /** SIGKILL, and wait until it is gone: its port refuses connections from then on. */
  kill(): Promise<void>;
}

/** A redis-server on `port` (persistence off), answering PING before this resolves. */
export async function startRedisOn(port: number): Promise<RedisServer> {
  const child = spawn(["redis-server", "--port", String(port), "--bind", HOST, "--save", "", "--appendonly", "no"]);
  const kill = async () => {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill("SIGKILL");
    await within(child.proc.exited, 5000, `redis-server ${port} to die`);
  };
  try {
    await waitFor(
      async () => {
        if (child.proc.exitCode !== null) throw new Error(`redis-server exited: ${child.stdoutText}${child.stderrText}`);
        return (await run(["redis-cli", "-p", String(port), "ping"], 5000)).stdout.trim() === "PONG";
      },
      10_000,
      `redis-server on port ${port}`,
    );
  } catch (error) {
    await kill();
    throw error;
  }
  return { port, child, kill, [Symbol.asyncDispose]: kill };
}

/** A redis-server on a free port with persistence off. */
export function startRedis(): Promise<RedisServer> {
  return startRedisOn(freePort());
}

export const hasCommand = (name: string): boolean => Bun.which(name) !== null;

// ---------------------------------------------------------------------------------------------
// A listener that does not accept (loopback only, deterministic)

/**
 * A TCP listener on 127.0.0.1 made with libc through bun:ffi, with a backlog of 0 and one
 * connection already waiting in its accept queue. Linux drops a SYN when the accept queue is
 * full, so a new connect to it neither succeeds nor fails: the kernel retries the SYN after 1 s,
 * 3 s, 7 s... That is the one loopback-only way to make a connect hang (`Bun.listen` accepts
 * everything at once). `acceptOne()` frees the queue; the next SYN retry then gets through.
 */
export async function unacceptingListener() {
  const { dlopen, FFIType, ptr, read } = await import("bun:ffi");
  const { i32, u32, ptr: p, u64, i64 } = FFIType;
  const libc = dlopen("libc.so.6", {
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, p, u32], returns: i32 },
    listen: { args: [i32, i32], returns: i32 },
    getsockname: { args: [i32, p, p], returns: i32 },
    accept4: { args: [i32, p, p, i32], returns: i32 },
    recv: { args: [i32, p, u64, i32], returns: i64 },
    send: { args: [i32, p, u64, i32], returns: i64 },
    close: { args: [i32], returns: i32 },
    __errno_location: { args: [], returns: p },
  });
  const AF_INET = 2;
  const SOCK_STREAM_NONBLOCK = 1 | 0o4000;
  const SOCK_NONBLOCK = 0o4000;
  const MSG_DONTWAIT = 0x40;
  const MSG_NOSIGNAL = 0x4000;
  const EAGAIN = 11;
  const c = libc.symbols;
  const errno = () => read.i32(c.__errno_location()!, 0);

  const fd = c.socket(AF_INET, SOCK_STREAM_NONBLOCK, 0);
  if (fd < 0) throw new Error(`socket(): errno ${errno()}`);
  const accepted: number[] = [];
  const closeAll = () => {
    for (const one of accepted.splice(0)) c.close(one);
    c.close(fd);
  };
  const sockaddr = new Uint8Array(16);
  const view = new DataView(sockaddr.buffer);
  view.setUint16(0, AF_INET, true);
  sockaddr.set([127, 0, 0, 1], 4);
  if (c.bind(fd, ptr(sockaddr), 16) !== 0 || c.listen(fd, 0) !== 0) {
    closeAll();
    throw new Error(`bind/listen: errno ${errno()}`);
  }
  c.getsockname(fd, ptr(sockaddr), ptr(new Uint32Array([16])));
  const port = view.getUint16(2, false);
  // The filler: its handshake completes and it waits in the accept queue, which is then full.
  const filler = await dial(port);

  return {
    port,
    address: `${HOST}:${port}`,
    /** Accepts one waiting connection (polling up to `ms`); returns its fd. */
    async acceptOne(ms = 10_000): Promise<number> {
      let one = -1;
      await waitFor(() => (one = c.accept4(fd, null, null, SOCK_NONBLOCK)) >= 0, ms, "a connection in the accept queue");
      accepted.push(one);
      return one;
    },
    /** Reads from an accepted fd until `n` bytes arrived (or EOF / reset); bounded by `ms`. */
    async receive(one: number, n: number, ms = 10_000): Promise<{ bytes: Buffer; eof: boolean; errno: number }> {
      const parts: Buffer[] = [];
      let got = 0;
      let eof = false;
      let error = 0;
      const buffer = new Uint8Array(64 * 1024);
      await waitFor(
        () => {
          for (;;) {
            const r = Number(c.recv(one, ptr(buffer), buffer.length, MSG_DONTWAIT));
            if (r > 0) {
              parts.push(Buffer.from(buffer.subarray(0, r)));
              got += r;
              if (got >= n) return true;
              continue;
            }
            if (r === 0) return (eof = true);
            const e = errno();
            if (e === EAGAIN) return false;
            error = e;
            return true;
          }
        },
        ms,
        `${n} bytes on an accepted socket`,
      );
      return { bytes: Buffer.concat(parts), eof, errno: error };
    },
    /** Writes all of `data` to an accepted fd (small payloads). */
    async send(one: number, data: Uint8Array | string, ms = 5000): Promise<void> {
      let rest = typeof data === "string" ? Buffer.from(data) : data;
      await waitFor(
        () => {
          const r = Number(c.send(one, ptr(rest), rest.length, MSG_DONTWAIT | MSG_NOSIGNAL));
          if (r > 0) rest = rest.subarray(r);
          else if (r < 0 && errno() !== EAGAIN) throw new Error(`send(): errno ${errno()}`);
          return rest.length === 0;
        },
        ms,
        "send on an accepted socket",
      );
    },
    closeFd(one: number): void {
      const at = accepted.indexOf(one);
      if (at >= 0) accepted.splice(at, 1);
      c.close(one);
    },
    filler,
    async [Symbol.asyncDispose]() {
      closeAll();
      await filler[Symbol.asyncDispose]();
      libc.close();
    },
  };
}

/** One session: sends `text`, expects it echoed exactly, half-closes and waits for the close. */
export async function exchange(port: number, text: string): Promise<void> {
  const peer = await dial(port);
  peer.write(text);
  await waitFor(() => peer.bytesIn === text.length || peer.closed, 10_000, "the echo");
  if (peer.text() !== text) throw new Error(`got ${JSON.stringify(peer.text())} for ${JSON.stringify(text)}`);
  peer.shutdown();
  await waitFor(() => peer.closed, 10_000, "the close");
}
