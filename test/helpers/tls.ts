/**
 * Helpers for the TLS-routing tests (the router under test is in router.ts): TLS servers with
 * the fixture certificates (test/fixtures/tls/certs) that greet with their name, the server
 * name and the ALPN protocol they saw, then echo;
 * TLS clients (node:tls, Bun.connect, `openssl s_client`); a server that reads a PROXY header
 * and says what it read; plain clients from any loopback address (127.0.0.2, ::1); HAProxy
 * as a child process.
 *
 * Every helper that opens something can be disposed with `await using`.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import tls from "node:tls";
import { ProxyHeaderReader, type ProxyHeader } from "../../src/protocol/proxy-protocol.ts";
import { freePort, HOST, ROOT, spawn, waitFor, within, type Child } from "./net.ts";

export const CERTS = `${ROOT}test/fixtures/tls/certs`;
export const pem = (file: string): string => readFileSync(`${CERTS}/${file}`, "utf8");
/** The CA that signed every fixture leaf but other.pem. */
export const CA = pem("ca.pem");

// ---------------------------------------------------------------------------------------------
// TLS servers

export interface TlsSession {
  servername: string | null;
  alpn: string | null;
  remote: string;
}

export interface TlsServer extends AsyncDisposable {
  name: string;
  port: number;
  address: string;
  /** TCP connections accepted, handshake or not. */
  connections: number;
  /** Completed handshakes. */
  sessions: TlsSession[];
}

/**
 * A TLS server on 127.0.0.1:0 with the fixture certificate `cert` (`db` → db.pem, db.key). After
 * the handshake it writes `NAME sni=SERVERNAME alpn=PROTOCOL\n` ("-" for none), then echoes.
 */
export async function tlsServer(cert: string, options: { name?: string; alpn?: string[]; host?: string } = {}): Promise<TlsServer> {
  const sockets = new Set<net.Socket>();
  const state: TlsServer = {
    name: options.name ?? cert,
    port: 0,
    address: "",
    connections: 0,
    sessions: [],
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = tls.createServer({ cert: pem(`${cert}.pem`), key: pem(`${cert}.key`), ...(options.alpn ? { ALPNProtocols: options.alpn } : {}) }, (socket) => {
    const servername = (socket as tls.TLSSocket & { servername?: string | false }).servername || null;
    const alpn = socket.alpnProtocol || null;
    state.sessions.push({ servername, alpn, remote: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.write(`${state.name} sni=${servername ?? "-"} alpn=${alpn ?? "-"}\n`);
    socket.on("data", (chunk) => socket.write(chunk));
    socket.on("end", () => socket.end());
    socket.on("error", () => {});
  });
  server.on("connection", (socket: net.Socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve) => server.listen(0, options.host ?? HOST, resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.address = `${options.host ?? HOST}:${state.port}`;
  return state;
}

// ---------------------------------------------------------------------------------------------
// TLS clients

export interface TlsReply {
  /** The certificate's subject CN. */
  cn: string;
  authorized: boolean;
  /** The protocol the server picked, or null. */
  alpn: string | null;
  /** The server's first line (a `tlsServer` greeting). */
  greeting: string;
  /** What came back after the greeting (the echo of what was sent). */
  echo: string;
}

/**
 * One node:tls session: handshake, write `send`, read the greeting line and the echo, close.
 * Rejects with the TLS error (`error.code`, e.g. ERR_SSL_TLSV1_UNRECOGNIZED_NAME) or when the
 * connection closes first. `ca: null` accepts any certificate.
 */
export async function tlsRequest(
  port: number,
  options: { servername?: string; alpn?: string[]; ca?: string | null; send?: string; host?: string; localAddress?: string } = {},
): Promise<TlsReply> {
  const send = options.send ?? "ping\n";
  const socket = tls.connect({
    host: options.host ?? HOST,
    port,
    ...(options.localAddress ? { socket: net.connect({ host: options.host ?? HOST, port, localAddress: options.localAddress }) } : {}),
    ...(options.servername !== undefined ? { servername: options.servername } : {}),
    ...(options.alpn ? { ALPNProtocols: options.alpn } : {}),
    ...(options.ca === null ? { rejectUnauthorized: false } : { ca: options.ca ?? CA }),
  });
  let text = "";
  try {
    return await within(
      new Promise<TlsReply>((resolve, reject) => {
        socket.on("secureConnect", () => socket.write(Buffer.from(send, "latin1")));
        socket.on("data", (chunk) => {
          text += chunk.toString("latin1");
          const newline = text.indexOf("\n");
          if (newline < 0 || text.length < newline + 1 + send.length) return;
          const cert = socket.getPeerCertificate();
          resolve({
            cn: String(cert?.subject?.CN ?? ""),
            authorized: socket.authorized,
            alpn: socket.alpnProtocol || null,
            greeting: text.slice(0, newline),
            echo: text.slice(newline + 1),
          });
        });
        socket.on("error", reject);
        socket.on("close", () => reject(new Error(`closed before the reply (got ${JSON.stringify(text)})`)));
      }),
      5000,
      `a TLS reply on port ${port}`,
    );
  } finally {
    socket.destroy();
  }
}

/** Bun's TLS client: the handshake result, the certificate's CN and the greeting line. */
export async function bunTlsRequest(port: number, serverName: string): Promise<{ authorized: boolean; cn: string; greeting: string }> {
  let text = "";
  let authorized = false;
  let cn = "";
  let resolveLine!: () => void;
  const line = new Promise<void>((resolve) => (resolveLine = resolve));
  const socket = await Bun.connect({
    hostname: HOST,
    port,
    tls: { serverName, ca: CA },
    socket: {
      handshake(socket, success) {
        authorized = success && socket.authorized;
        cn = String(socket.getPeerCertificate()?.subject?.CN ?? "");
      },
      data(_socket, chunk) {
        text += Buffer.from(chunk).toString("latin1");
        if (text.includes("\n")) resolveLine();
      },
      close() {
        resolveLine();
      },
      error() {},
    },
  });
  try {
    await within(line, 5000, "a greeting over Bun's TLS client");
  } finally {
    socket.end();
  }
  return { authorized, cn, greeting: text.split("\n")[0]! };
}

/** `openssl s_client -connect 127.0.0.1:PORT [-servername NAME] -CAfile ca.pem ...` with stdin at EOF. */
export async function sClient(port: number, servername: string | null, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ["openssl", "s_client", "-connect", `${HOST}:${port}`, ...(servername === null ? ["-noservername"] : ["-servername", servername])];
  await using child = spawn([...args, "-CAfile", `${CERTS}/ca.pem`, "-verify_return_error", ...extra]);
  const code = await child.exited(10_000);
  return { code, stdout: child.stdoutText, stderr: child.stderrText };
}

// ---------------------------------------------------------------------------------------------
// Plain clients from any loopback address

export class NetClient implements AsyncDisposable {
  readonly chunks: Buffer[] = [];
  closed = false;
  readonly whenClosed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    this.whenClosed = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("close", () => (this.closed = true));
    socket.on("data", (chunk: Buffer) => this.chunks.push(chunk));
    socket.on("error", () => {});
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.received().toString("latin1");
  }

  write(data: Uint8Array | string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (error) => (error ? reject(error) : resolve())));
  }

  /** Waits until the other side has closed (FIN or reset). */
  async closedWithin(ms = 5000): Promise<void> {
    await within(this.whenClosed, ms, "the connection to be closed");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.destroy();
    await within(this.whenClosed, 2000, "a test socket to close");
  }
}

/** A TCP connection to `host:port` from `localAddress` (127.0.0.2, ::1 ...). Resolves once connected. */
export async function dialFrom(port: number, localAddress: string, host = localAddress.includes(":") ? "::1" : HOST): Promise<NetClient> {
  const socket = net.connect({ host, port, localAddress });
  const client = new NetClient(socket);
  await within(
    new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    }),
    5000,
    `a connection from ${localAddress}`,
  );
  return client;
}

// ---------------------------------------------------------------------------------------------
// A server that reads a PROXY header

export interface ProxyReaderServer extends AsyncDisposable {
  port: number;
  address: string;
  /** Connections accepted. */
  connections: number;
  /** Headers read, in order. */
  headers: ProxyHeader[];
  /** The TCP peer of each connection (the proxy, not the client). */
  peers: string[];
}

/**
 * A plain TCP server that expects a PROXY header (v1 or v2), answers
 * `proxy vN SOURCE -> DESTINATION\n` (or `error REASON\n` and closes), then echoes the rest.
 */
export async function proxyReader(): Promise<ProxyReaderServer> {
  const sockets = new Set<net.Socket>();
  const state: ProxyReaderServer = {
    port: 0,
    address: "",
    connections: 0,
    headers: [],
    peers: [],
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const endpoint = (e: { host: string; port: number } | null) => (e === null ? "unknown" : `${e.host}:${e.port}`);
  const server = net.createServer((socket) => {
    state.connections++;
    state.peers.push(`${socket.remoteAddress}:${socket.remotePort}`);
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const reader = new ProxyHeaderReader();
    let seen = 0;
    socket.on("data", (chunk: Buffer) => {
      if (reader.result.state !== "need-more") return void socket.write(chunk);
      const result = reader.push(chunk);
      if (result.state === "need-more") return void (seen += chunk.length);
      if (result.state === "error") {
        socket.end(`error ${result.reason}\n`);
        return;
      }
      state.headers.push(result);
      socket.write(`proxy v${result.version} ${endpoint(result.source)} -> ${endpoint(result.destination)}\n`);
      const rest = chunk.subarray(result.headerLength - seen);
      if (rest.length > 0) socket.write(rest);
    });
    socket.on("end", () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.address = `${HOST}:${state.port}`;
  return state;
}

// ---------------------------------------------------------------------------------------------
// HAProxy

export const hasHaproxy = Bun.which("haproxy") !== null;

/**
 * HAProxy in the foreground with `body` after a tcp-mode `defaults` section. `{port}` in the
 * body is replaced by a free port, where the first `bind` listens; resolves once it accepts.
 */
export async function startHaproxy(body: string): Promise<{ port: number; child: Child } & AsyncDisposable> {
  const port = freePort();
  const file = `${tmpdir()}/tcprouter-test-haproxy-${port}.cfg`;
  const text =
    "global\n  maxconn 1000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n" +
    body.replaceAll("{port}", String(port));
  await Bun.write(file, text);
  const child = spawn(["haproxy", "-db", "-f", file]);
  const stop = async () => {
    await child[Symbol.asyncDispose]();
    await Bun.file(file)
      .delete()
      .catch(() => {});
  };
  try {
    await waitFor(
      () => {
        if (child.proc.exitCode !== null) throw new Error(`haproxy exited (${child.proc.exitCode}): ${child.stderrText}`);
        return isListening(port);
      },
      10_000,
      `haproxy on port ${port}`,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, child, [Symbol.asyncDispose]: stop };
}

/** Whether something listens on 127.0.0.1:PORT, read from /proc/net/tcp (connecting would start a session). */
async function isListening(port: number): Promise<boolean> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const table = await Bun.file("/proc/net/tcp").text();
  return table.split("\n").some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === local && fields[3] === "0A";
  });
}

// ---------------------------------------------------------------------------------------------
// Client certificates (mTLS) and openssl runs

export interface ClientCerts extends AsyncDisposable {
  dir: string;
  /** Absolute paths: `admin` (O=ops, CN=admin), `guest` (CN=guest), both signed by the fixture CA; `rogue` (CN=admin) by other-ca. */
  cert(name: "admin" | "guest" | "rogue"): string;
  key(name: "admin" | "guest" | "rogue"): string;
  /** SHA-256 fingerprint as OpenSSL prints it (`AB:CD:…`). */
  fingerprint(name: "admin" | "guest" | "rogue"): string;
}

/** Client certificates (clientAuth, EC P-256) made with openssl in a temp dir, removed on dispose. */
export async function clientCerts(): Promise<ClientCerts> {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const dir = mkdtempSync(`${tmpdir()}/tcprouter-test-mtls-`);
  const make = async (name: string, issuer: string, subject: string) => {
    await using child = spawn([
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-CA",
      `${CERTS}/${issuer}.pem`,
      "-CAkey",
      `${CERTS}/${issuer}.key`,
      "-keyout",
      `${dir}/${name}.key`,
      "-out",
      `${dir}/${name}.pem`,
      "-subj",
      subject,
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=clientAuth",
    ]);
    if ((await child.exited(10_000)) !== 0) throw new Error(`openssl req for ${name}: ${child.stderrText}`);
  };
  await Promise.all([make("admin", "ca", "/O=ops/CN=admin"), make("guest", "ca", "/CN=guest"), make("rogue", "other-ca", "/CN=admin")]);
  const { X509Certificate } = await import("node:crypto");
  return {
    dir,
    cert: (name) => `${dir}/${name}.pem`,
    key: (name) => `${dir}/${name}.key`,
    fingerprint: (name) => new X509Certificate(readFileSync(`${dir}/${name}.pem`)).fingerprint256,
    async [Symbol.asyncDispose]() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `openssl s_client` to 127.0.0.1:PORT with `args`, `input` on stdin; its output and the TLS alert number it reported (null: none). */
export async function openssl(
  port: number,
  args: string[],
  input = "",
): Promise<{ code: number; output: string; alert: number | null; protocol: string | null; cipher: string | null }> {
  const proc = Bun.spawn(["openssl", "s_client", "-connect", `${HOST}:${port}`, "-CAfile", `${CERTS}/ca.pem`, ...args], {
    stdin: new Blob([input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(), 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const output = stdout + stderr;
  const alert = /SSL alert number (\d+)/.exec(output);
  const negotiated = /New, (TLSv[\d.]+), Cipher is (\S+)/.exec(output);
  return { code, output, alert: alert ? Number(alert[1]) : null, protocol: negotiated?.[1] ?? null, cipher: negotiated?.[2] ?? null };
}

/** One node:tls session with a client certificate: handshake, read the first line, close. Rejects when the server closes first. */
export async function firstLine(port: number, options: tls.ConnectionOptions = {}): Promise<string> {
  const socket = tls.connect({ host: HOST, port, ca: CA, servername: "localhost", ...options });
  let text = "";
  try {
    return await within(
      new Promise<string>((resolve, reject) => {
        socket.on("data", (chunk) => {
          text += chunk.toString("latin1");
          if (text.includes("\n")) resolve(text.slice(0, text.indexOf("\n")));
        });
        socket.on("error", reject);
        socket.on("close", () => reject(new Error(`closed before a line (got ${JSON.stringify(text)})`)));
      }),
      5000,
      `a line on port ${port}`,
    );
  } finally {
    socket.destroy();
  }
}
