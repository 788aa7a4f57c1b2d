/**
 * The two ends of the TLS suite (bench/suites/tls.ts), each run as its own process:
 *
 *   bun bench/contenders/tls-peers.ts server --port P [--plain]
 *       A TLS server (Bun.listen, the db.example.com test certificate, EC P-256) speaking a
 *       line protocol after the handshake: `PING` → `PONG`; `UP n` → reads n bytes, `OK`;
 *       `UPH n` → the same with `OK <sha256>`; `DOWN n` → writes n bytes of a fixed pattern.
 *       `--plain`: the same protocol over plain TCP (the peer behind a proxy that terminates TLS).
 *   bun bench/contenders/tls-peers.ts handshakes --port P --servername N --concurrency C --seconds S [--cert F --key F]
 *       C loops of: connect, full TLS handshake (no resumption), PING/PONG, close. Prints
 *       {"sessions":…,"errors":…,"ms":…} on stdout. `--cert`/`--key`: a client certificate
 *       (PEM files) shown to a server that asks for one (read once, before the loops).
 *   bun bench/contenders/tls-peers.ts bulk --port P --servername N --bytes B --direction up|down
 *       One TLS session moving B bytes one way. Prints {"bytes":…,"ms":…}.
 *   bun bench/contenders/tls-peers.ts check --port P --servername N
 *       One verified session (CA: the test CA): certificate CN, PONG, 1 MiB each way by
 *       sha256. Prints {"cn":…,"authorized":…,"up":…,"down":…,"protocol":…,"cipher":…,"group":…}
 *       (what the first session negotiated); exits 1 on any failure. `--cert`/`--key` as above.
 *   bun bench/contenders/tls-peers.ts refused --port P --servername N
 *       A session without a client certificate must be closed without a PONG (within 5 s).
 *       Prints {"refused":true,"how":…}; exits 1 if a PONG came back or nothing happened.
 *
 * The timing loops do not verify the certificate (the check does, once): the generator shares
 * the cores with what it measures, and a signature check per session is its cost, not theirs.
 */
import type { Socket } from "bun";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

const CERTS = resolve(import.meta.dir, "../../test/fixtures/tls/certs");
const HOST = "127.0.0.1";
const CHUNK = 256 * 1024;
const PATTERN = Buffer.alloc(CHUNK, "tcprouter tls bench ");

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: "string" },
    servername: { type: "string", default: "db.example.com" },
    concurrency: { type: "string", default: "32" },
    seconds: { type: "string", default: "5" },
    bytes: { type: "string", default: String(64 * 1024 * 1024) },
    direction: { type: "string", default: "up" },
    plain: { type: "boolean", default: false },
    cert: { type: "string" },
    key: { type: "string" },
  },
});
const port = Number(values.port);
const serverName = values.servername!;
if ((values.cert === undefined) !== (values.key === undefined)) throw new Error("--cert and --key go together");
/** The client certificate and key (PEM text), read once; none when not given. */
const clientCert = values.cert === undefined ? {} : { cert: readFileSync(values.cert, "utf8"), key: readFileSync(values.key!, "utf8") };

// ── Server ─────────────────────────────────────────────────────────────────────────────────

interface Conn {
  line: string;
  mode: "command" | "up" | "down" | "done";
  left: number;
  /** Where in PATTERN the next byte sent comes from. */
  offset: number;
  hasher: Bun.CryptoHasher | null;
}

/** The next piece of the pattern stream: at most `left` bytes from `offset`. */
function nextPiece(offset: number, left: number): Buffer {
  return PATTERN.subarray(offset, offset + Math.min(left, CHUNK - offset));
}

function serve(): void {
  Bun.listen<Conn>({
    hostname: HOST,
    port,
    ...(values.plain ? {} : { tls: { cert: Bun.file(`${CERTS}/db.pem`), key: Bun.file(`${CERTS}/db.key`) } }),
    socket: {
      binaryType: "buffer",
      open(socket) {
        socket.data = { line: "", mode: "command", left: 0, offset: 0, hasher: null };
      },
      data(socket, chunk: Buffer) {
        const conn = socket.data;
        if (conn.mode === "up") return up(socket, chunk);
        if (conn.mode !== "command") return;
        conn.line += chunk.toString("latin1");
        const newline = conn.line.indexOf("\n");
        if (newline < 0) return;
        const [verb, count] = conn.line.slice(0, newline).split(" ");
        const rest = chunk.subarray(chunk.length - (conn.line.length - newline - 1));
        conn.line = "";
        if (verb === "PING") {
          socket.write("PONG\n");
        } else if (verb === "UP" || verb === "UPH") {
          conn.mode = "up";
          conn.left = Number(count);
          conn.hasher = verb === "UPH" ? new Bun.CryptoHasher("sha256") : null;
          if (rest.length > 0) up(socket, rest);
          else if (conn.left === 0) up(socket, Buffer.alloc(0));
        } else if (verb === "DOWN") {
          conn.mode = "down";
          conn.left = Number(count);
          down(socket);
        } else {
          socket.end(`ERR ${verb}\n`);
        }
      },
      drain(socket) {
        if (socket.data.mode === "down") down(socket);
      },
      close() {},
      error() {},
    },
  });
  process.stdout.write(`listening ${HOST}:${port}\n`);
}

function up(socket: Socket<Conn>, chunk: Buffer): void {
  const conn = socket.data;
  const take = Math.min(conn.left, chunk.length);
  conn.hasher?.update(chunk.subarray(0, take));
  conn.left -= take;
  if (conn.left > 0) return;
  conn.mode = "done";
  socket.write(conn.hasher === null ? "OK\n" : `OK ${conn.hasher.digest("hex")}\n`);
}

/** Writes pattern bytes until `left` is 0 or the kernel is full (then again on drain). */
function down(socket: Socket<Conn>): void {
  const conn = socket.data;
  while (conn.left > 0) {
    const piece = nextPiece(conn.offset, conn.left);
    const written = socket.write(piece);
    if (written <= 0) return;
    conn.left -= written;
    conn.offset = (conn.offset + written) % CHUNK;
    if (written < piece.length) return;
  }
  conn.mode = "done";
}

// ── Clients ────────────────────────────────────────────────────────────────────────────────

interface Client {
  text: string;
  bytes: number;
  hasher: Bun.CryptoHasher | null;
  onOpen: () => void;
  onData: () => void;
  onDrain: () => void;
  onClose: (error?: Error) => void;
}

const clientHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Client>) {
    socket.data.onOpen();
  },
  data(socket: Socket<Client>, chunk: Buffer) {
    const client = socket.data;
    client.bytes += chunk.length;
    if (client.hasher !== null) client.hasher.update(chunk);
    else if (client.text.length < 200) client.text += chunk.toString("latin1");
    client.onData();
  },
  drain(socket: Socket<Client>) {
    socket.data.onDrain();
  },
  close(socket: Socket<Client>, error?: Error) {
    socket.data.onClose(error);
  },
  error() {},
};

/**
 * Opens one TLS session; resolves once the handshake is done. `Bun.connect` resolves before
 * that, and a write before `open` (which, with no `handshake` handler, fires after the
 * handshake) makes Bun close the connection.
 */
async function connect(verify: boolean, name = serverName, withCert = true): Promise<Socket<Client>> {
  let opened!: () => void;
  let failed!: (error: Error) => void;
  const open = new Promise<void>((resolveOpen, reject) => {
    opened = resolveOpen;
    failed = reject;
  });
  const client: Client = {
    text: "",
    bytes: 0,
    hasher: null,
    onOpen: () => opened(),
    onData() {},
    onDrain() {},
    onClose: (error) => failed(error ?? new Error("closed during the handshake")),
  };
  const tls = verify
    ? { serverName: name, ca: readFileSync(`${CERTS}/ca.pem`, "utf8"), ...(withCert ? clientCert : {}) }
    : { serverName: name, rejectUnauthorized: false, ...(withCert ? clientCert : {}) };
  const socket = await Bun.connect<Client>({ hostname: HOST, port, tls, data: client, socket: clientHandlers });
  await open;
  return socket;
}

/** Resolves when `done()` says so, rejects if the socket closes first. */
function until(socket: Socket<Client>, done: (client: Client) => boolean, what: string): Promise<void> {
  const client = socket.data;
  return new Promise((resolvePromise, reject) => {
    if (done(client)) return resolvePromise();
    client.onData = () => {
      if (done(client)) resolvePromise();
    };
    client.onClose = (error) => reject(new Error(`closed before ${what}${error ? `: ${error.message}` : ""} (got ${JSON.stringify(client.text)})`));
  });
}

/** Writes `total` pattern bytes, waiting for drain whenever the kernel is full. */
async function send(socket: Socket<Client>, total: number): Promise<void> {
  let left = total;
  let offset = 0;
  while (left > 0) {
    const piece = nextPiece(offset, left);
    const written = socket.write(piece);
    if (written < 0) throw new Error("the session closed while sending");
    left -= written;
    offset = (offset + written) % CHUNK;
    if (written < piece.length) await new Promise<void>((resolveDrain) => (socket.data.onDrain = resolveDrain));
  }
}

async function handshakes(): Promise<void> {
  const concurrency = Number(values.concurrency);
  const deadline = performance.now() + Number(values.seconds) * 1000;
  let sessions = 0;
  let errors = 0;
  let firstError = "";
  const started = performance.now();
  const loop = async () => {
    while (performance.now() < deadline) {
      try {
        const socket = await connect(false);
        socket.write("PING\n");
        await until(socket, (c) => c.text.includes("PONG\n"), "PONG");
        socket.end();
        sessions++;
      } catch (error) {
        errors++;
        firstError ||= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  process.stdout.write(`${JSON.stringify({ sessions, errors, ms: performance.now() - started, firstError })}\n`);
}

async function bulk(): Promise<void> {
  const bytes = Number(values.bytes);
  const socket = await connect(false);
  const started = performance.now();
  if (values.direction === "up") {
    socket.write(`UP ${bytes}\n`);
    await send(socket, bytes);
    await until(socket, (c) => c.text.includes("OK\n"), "OK");
  } else {
    socket.write(`DOWN ${bytes}\n`);
    await until(socket, (c) => c.bytes >= bytes, `${bytes} bytes`);
  }
  const ms = performance.now() - started;
  socket.end();
  process.stdout.write(`${JSON.stringify({ bytes, ms })}\n`);
}

async function check(): Promise<void> {
  const mib = 1024 * 1024;
  const expected = new Bun.CryptoHasher("sha256");
  for (let left = mib; left > 0; left -= CHUNK) expected.update(nextPiece(0, left));
  const want = expected.digest("hex");

  let socket = await connect(true);
  const authorized = socket.authorized;
  const cn = String(socket.getPeerCertificate()?.subject?.CN ?? "");
  const protocol = socket.getTLSVersion();
  const cipher = socket.getCipher()?.standardName ?? socket.getCipher()?.name ?? "";
  const key = socket.getEphemeralKeyInfo() as { name?: string; type?: string } | null;
  const group = key?.name ?? key?.type ?? "";
  socket.write("PING\n");
  await until(socket, (c) => c.text.includes("PONG\n"), "PONG");
  socket.end();

  socket = await connect(true);
  socket.write(`UPH ${mib}\n`);
  await send(socket, mib);
  await until(socket, (c) => /OK \w+\n/.test(c.text), "OK");
  const up = socket.data.text.trim().split(" ")[1] === want;
  socket.end();

  socket = await connect(true);
  socket.data.hasher = new Bun.CryptoHasher("sha256");
  socket.write(`DOWN ${mib}\n`);
  await until(socket, (c) => c.bytes >= mib, "1 MiB");
  const down = socket.data.hasher!.digest("hex") === want;
  socket.end();

  const ok = authorized && cn === serverName && up && down;
  process.stdout.write(`${JSON.stringify({ cn, authorized, up, down, protocol, cipher, group })}\n`);
  process.exit(ok ? 0 : 1);
}

/** A session without a client certificate: closed without a PONG is refused; a PONG (or nothing in 5 s) is not. */
async function refused(): Promise<void> {
  let how: string;
  try {
    const socket = await connect(false, serverName, false);
    socket.write("PING\n");
    const closed = until(socket, (c) => c.text.includes("PONG\n"), "PONG").then(
      () => "PONG",
      (error: Error) => error.message,
    );
    how = await Promise.race([closed, Bun.sleep(5000).then(() => "neither a PONG nor a close in 5 s")]);
    socket.end();
  } catch (error) {
    how = `handshake failed: ${(error as Error).message}`;
  }
  const ok = how !== "PONG" && !how.startsWith("neither");
  process.stdout.write(`${JSON.stringify({ refused: ok, how })}\n`);
  process.exit(ok ? 0 : 1);
}

const role = positionals[0];
if (!Number.isInteger(port) || port <= 0) throw new Error("--port is required");
if (role === "server") serve();
else if (role === "handshakes") await handshakes();
else if (role === "bulk") await bulk();
else if (role === "check") await check();
else if (role === "refused") await refused();
else throw new Error(`unknown role "${role}" (server, handshakes, bulk, check, refused)`);
if (role !== "server") process.exit(0);
