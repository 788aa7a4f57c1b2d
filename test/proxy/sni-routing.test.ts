/**
 * SNI passthrough end to end (issue 5): real TLS clients (node:tls, Bun's TLS client, openssl
 * s_client) reach TLS servers with different certificates by name through one listener;
 * wildcard, ALPN and default routes; the unrecognized_name alert; crafted hellos (1-byte
 * segments, many records, up to 16 KiB) arrive at the backend byte for byte; hello_timeout.
 *
 * A backend tells which one it is twice: by its certificate (CN) and by its greeting line
 * (`NAME sni=SERVERNAME alpn=PROTOCOL`), which also shows that the server name reached it.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { MAX_CLIENT_HELLO_LENGTH, tlsAlert, ALERT_UNRECOGNIZED_NAME } from "../../src/protocol/sni.ts";
import { buildClientHello, chunks, helloFixtures, reframe } from "../helpers/client-hello.ts";
import { dial, hasCommand, listen, waitFor, type Peer, type Server } from "../helpers/net.ts";
import { bunTlsRequest, sClient, tlsRequest, tlsServer } from "../helpers/tls.ts";
import { type RouterUnderTest, startRouter } from "../helpers/router.ts";

const hasOpenssl = hasCommand("openssl");

/**
 * One SNI listener with a route of each kind and a default, one ("strict") without a default,
 * and a TLS server per backend.
 */
async function sniRig(options: { helloTimeout?: string } = {}) {
  const servers = {
    db: await tlsServer("db"),
    web: await tlsServer("web"),
    apps: await tlsServer("apps"),
    h2: await tlsServer("h2", { alpn: ["h2", "http/1.1"] }),
    fallback: await tlsServer("default", { name: "fallback" }),
  };
  const backends = Object.entries(servers)
    .map(([name, server]) => `[backends.${name}]\ntargets = ["${server.address}"]\n`)
    .join("");
  const router = await startRouter(`
[[listeners]]
name = "sni"
listen = "127.0.0.1:0"
mode = "sni"
backend = "fallback"
${options.helloTimeout ? `hello_timeout = "${options.helloTimeout}"` : ""}
[[listeners.routes]]
server_names = ["db.example.com"]
backend = "db"
[[listeners.routes]]
server_names = ["*.apps.example.com"]
backend = "apps"
[[listeners.routes]]
server_names = ["web.example.com"]
backend = "web"
[[listeners.routes]]
alpn = ["h2"]
backend = "h2"

[[listeners]]
name = "strict"
listen = "127.0.0.1:0"
mode = "sni"
[[listeners.routes]]
server_names = ["db.example.com"]
backend = "db"

${backends}`);
  return {
    router,
    servers,
    /** TCP connections the backends accepted, all together. */
    dialled: () => Object.values(servers).reduce((sum, server) => sum + server.connections, 0),
    async [Symbol.asyncDispose]() {
      await router[Symbol.asyncDispose]();
      for (const server of Object.values(servers)) await server[Symbol.asyncDispose]();
    },
  };
}

/** One SNI listener whose route for `name` goes to a plain TCP recorder (`routed`); everything else to `other`. */
async function recorderRig(name = "raw.example.com", extra = "") {
  const routed = listen();
  const other = listen();
  const router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
mode = "sni"
backend = "other"
${extra}
[[listeners.routes]]
server_names = ["${name}"]
backend = "routed"
[backends.routed]
targets = ["${routed.address}"]
[backends.other]
targets = ["${other.address}"]
`);
  return {
    router,
    routed,
    other,
    async [Symbol.asyncDispose]() {
      await router[Symbol.asyncDispose]();
      await routed.stop();
      await other.stop();
    },
  };
}

/**
 * The debug `session` lines (one per closed session) that contain `text`. Warn lines are
 * limited to one per second per listener, so they are counted only for a listener's first refusal.
 */
function sessionLines(router: RouterUnderTest, text: string): string[] {
  return router.matching(text).filter((line) => line.startsWith("debug session "));
}

/** Waits until the router ends the connection (FIN or reset): the test client stays half-open after a FIN. */
function hungUp(client: Peer, ms = 5000): Promise<void> {
  return waitFor(() => client.hungUp, ms, "the router to close the connection");
}

/** Waits until `server` has received exactly `bytes` on its first connection. */
async function receivedExactly(server: Server, bytes: Uint8Array): Promise<void> {
  const peer = await server.peer(0);
  await waitFor(() => peer.bytesIn >= bytes.length, 5000, `${bytes.length} bytes at the backend`);
  expect(peer.received().equals(Buffer.from(bytes))).toBe(true);
}

describe("real TLS clients reach different backends by name through one listener", () => {
  test("node:tls: each name gets its backend's certificate, verified, and its greeting; the echo comes back", async () => {
    await using rig = await sniRig();
    for (const name of ["db", "web"] as const) {
      const reply = await tlsRequest(rig.router.port, { servername: `${name}.example.com` });
      expect(reply).toEqual({ cn: `${name}.example.com`, authorized: true, alpn: null, greeting: `${name} sni=${name}.example.com alpn=-`, echo: "ping\n" });
    }
    expect([rig.servers.db.sessions.length, rig.servers.web.sessions.length, rig.servers.fallback.connections]).toEqual([1, 1, 0]);
  });

  test("Bun's TLS client (Bun.connect with tls.serverName)", async () => {
    await using rig = await sniRig();
    expect(await bunTlsRequest(rig.router.port, "db.example.com")).toEqual({
      authorized: true,
      cn: "db.example.com",
      greeting: "db sni=db.example.com alpn=-",
    });
    expect(await bunTlsRequest(rig.router.port, "web.example.com")).toEqual({
      authorized: true,
      cn: "web.example.com",
      greeting: "web sni=web.example.com alpn=-",
    });
  });

  test.skipIf(!hasOpenssl)("openssl s_client -servername: the certificate verifies against the test CA", async () => {
    await using rig = await sniRig();
    for (const name of ["db.example.com", "web.example.com", "x.apps.example.com"]) {
      const { code, stdout } = await sClient(rig.router.port, name);
      expect(code).toBe(0);
      expect(stdout).toContain(`subject=CN = ${name.startsWith("x.") ? "*.apps.example.com" : name}`);
      expect(stdout).toContain("Verify return code: 0 (ok)");
    }
    expect([rig.servers.db.sessions.length, rig.servers.web.sessions.length, rig.servers.apps.sessions.length]).toEqual([1, 1, 1]);
  });

  test("a passthrough session carries 4 MiB each way unchanged", async () => {
    await using rig = await sniRig();
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
    const reply = await tlsRequest(rig.router.port, { servername: "db.example.com", send: payload.toString("latin1") });
    expect(reply.echo.length).toBe(payload.length);
    expect(Buffer.from(reply.echo, "latin1").equals(payload)).toBe(true);
  }, 30_000);
});

describe("wildcard, ALPN and default routes", () => {
  test("*.apps.example.com takes exactly one label, in any case; other names go to the default", async () => {
    await using rig = await sniRig();
    const port = rig.router.port;
    expect(await tlsRequest(port, { servername: "x.apps.example.com" })).toMatchObject({
      cn: "*.apps.example.com",
      authorized: true,
      greeting: "apps sni=x.apps.example.com alpn=-",
    });
    expect((await tlsRequest(port, { servername: "Y.APPS.Example.COM", ca: null })).greeting).toBe("apps sni=Y.APPS.Example.COM alpn=-");
    expect((await tlsRequest(port, { servername: "apps.example.com", ca: null })).greeting).toBe("fallback sni=apps.example.com alpn=-");
    expect((await tlsRequest(port, { servername: "a.b.apps.example.com", ca: null })).greeting).toBe("fallback sni=a.b.apps.example.com alpn=-");
  });

  test("the ALPN route takes clients offering h2; an exact name still wins; without h2 the same name goes to the default", async () => {
    await using rig = await sniRig();
    const port = rig.router.port;
    expect(await tlsRequest(port, { servername: "h2.example.com", alpn: ["h2", "http/1.1"] })).toMatchObject({
      cn: "h2.example.com",
      authorized: true,
      alpn: "h2",
      greeting: "h2 sni=h2.example.com alpn=h2",
    });
    expect((await tlsRequest(port, { servername: "db.example.com", alpn: ["h2"] })).greeting).toBe("db sni=db.example.com alpn=-");
    expect((await tlsRequest(port, { servername: "h2.example.com", alpn: ["http/1.1"], ca: null })).greeting).toBe("fallback sni=h2.example.com alpn=-");
    expect((await tlsRequest(port, { servername: "h2.example.com", ca: null })).greeting).toBe("fallback sni=h2.example.com alpn=-");
  });

  test("a client that sends no server name goes to the default route", async () => {
    await using rig = await sniRig();
    // node:tls sends no SNI when connecting to an IP address without `servername`.
    expect((await tlsRequest(rig.router.port, { ca: null })).greeting).toBe("fallback sni=- alpn=-");
    if (hasOpenssl) {
      const { stdout } = await sClient(rig.router.port, null, ["-verify_quiet"]);
      expect(stdout).toContain("subject=CN = default.example.com");
    }
    expect(rig.servers.fallback.sessions.map((session) => session.servername)).toEqual(hasOpenssl ? [null, null] : [null]);
  });
});

describe("no route and no default: the unrecognized_name alert", () => {
  test("node:tls sees alert 112; a warn line names the client and the name; nothing is dialled", async () => {
    await using rig = await sniRig();
    const port = rig.router.portOf(1);
    const error = await tlsRequest(port, { servername: "nope.example.com" }).then(
      () => null,
      (caught: Error & { code?: string }) => caught,
    );
    expect(`${error?.code} ${error?.message}`).toMatch(/unrecognized.name/i);
    await waitFor(() => rig.router.matching('"nope.example.com"').length > 0, 2000, "the warn line");
    const [line] = rig.router.matching('"nope.example.com"');
    expect(line).toMatch(/^warn listener strict: client 127\.0\.0\.1:\d+: no route for server name "nope\.example\.com"/);
    expect(rig.dialled()).toBe(0);
  });

  test.skipIf(!hasOpenssl)("openssl s_client reports the alert, with and without a server name", async () => {
    await using rig = await sniRig();
    const named = await sClient(rig.router.portOf(1), "nope.example.com");
    expect(named.code).not.toBe(0);
    expect(named.stderr).toMatch(/unrecognized name|alert number 112/);
    const anonymous = await sClient(rig.router.portOf(1), null);
    expect(anonymous.stderr).toMatch(/unrecognized name|alert number 112/);
    expect(sessionLines(rig.router, "no route for server name (none)")).toHaveLength(1);
    expect(rig.dialled()).toBe(0);
  });

  test("a raw client gets exactly the 7-byte alert record, then the connection closes", async () => {
    await using rig = await sniRig();
    await using client = await dial(rig.router.portOf(1));
    client.write(buildClientHello({ serverName: "nope.example.com" }));
    await hungUp(client);
    expect([...client.received()]).toEqual([...tlsAlert(ALERT_UNRECOGNIZED_NAME)]);
  });
});

describe("the hello reaches the backend byte for byte, however it arrives", () => {
  test("a hello in 1-byte segments, then application bytes", async () => {
    await using rig = await recorderRig();
    const hello = buildClientHello({ serverName: "raw.example.com" });
    await using client = await dial(rig.router.port);
    for (const byte of chunks(hello, 1)) {
      client.write(byte);
      await Bun.sleep(1); // one segment each: TCP_NODELAY is on and the router reads in between
    }
    client.write("after the hello");
    await receivedExactly(rig.routed, Buffer.concat([hello, Buffer.from("after the hello")]));
    expect(rig.other.peers).toHaveLength(0);
  }, 20_000);

  test("a hello over many records (100 bytes each, and 1 byte each), with data after it in the same segment", async () => {
    for (const recordSize of [100, 1]) {
      await using rig = await recorderRig();
      const hello = reframe(buildClientHello({ serverName: "raw.example.com", alpn: ["h2"] }), recordSize);
      const sent = Buffer.concat([hello, Buffer.from("early data")]);
      await using client = await dial(rig.router.port);
      for (const piece of chunks(sent, 333)) client.write(piece);
      await receivedExactly(rig.routed, sent);
    }
  });

  test("a 6 KiB hello (post-quantum key share) and a 16 KiB one, the largest allowed; a larger one is closed without a dial", async () => {
    for (const bodyLength of [6000, MAX_CLIENT_HELLO_LENGTH]) {
      await using rig = await recorderRig();
      const hello = buildClientHello({ serverName: "raw.example.com", keyShare: 1216, bodyLength });
      expect(hello.length).toBeGreaterThan(4096);
      await using client = await dial(rig.router.port);
      client.write(hello);
      await receivedExactly(rig.routed, hello);
    }
    await using rig = await recorderRig();
    await using client = await dial(rig.router.port);
    client.write(buildClientHello({ serverName: "raw.example.com", bodyLength: MAX_CLIENT_HELLO_LENGTH + 1 }));
    await hungUp(client);
    expect([rig.routed.peers.length, rig.other.peers.length]).toEqual([0, 0]);
    expect(sessionLines(rig.router, "ClientHello too long")).toHaveLength(1);
  });

  test("the ClientHellos of real clients (captured fixtures) route by their names and arrive unchanged", async () => {
    for (const fixture of helloFixtures()) {
      await using rig = await recorderRig(fixture.serverName ?? "unused.example.com");
      await using client = await dial(rig.router.port);
      client.write(fixture.bytes);
      await receivedExactly(fixture.serverName === null ? rig.other : rig.routed, fixture.bytes);
    }
  });
});

describe("clients that never finish a hello", () => {
  test("hello_timeout closes a silent client and one that stops halfway; nothing is dialled", async () => {
    await using rig = await recorderRig("raw.example.com", 'hello_timeout = "300ms"');
    const started = performance.now();
    await using silent = await dial(rig.router.port);
    await using halfway = await dial(rig.router.port);
    const hello = buildClientHello({ serverName: "raw.example.com" });
    halfway.write(hello.subarray(0, hello.length >> 1));
    await Promise.all([hungUp(silent), hungUp(halfway)]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect([rig.routed.peers.length, rig.other.peers.length]).toEqual([0, 0]);
    expect(sessionLines(rig.router, "no complete ClientHello within 300 ms")).toHaveLength(2);
  });

  test("the default hello_timeout is 10s", () => {
    const toml = `[[listeners]]\nlisten = "127.0.0.1:0"\nmode = "sni"\nbackend = "b"\n[backends.b]\ntargets = ["127.0.0.1:1"]\n`;
    expect(parseConfig(toml, "toml").listeners[0]!.helloTimeout).toBe(10_000);
  });

  test("bytes that are not TLS close the connection at once, without a dial", async () => {
    await using rig = await recorderRig();
    await using client = await dial(rig.router.port);
    client.write("GET / HTTP/1.1\r\nHost: raw.example.com\r\n\r\n");
    await hungUp(client);
    expect([rig.routed.peers.length, rig.other.peers.length]).toEqual([0, 0]);
    expect(sessionLines(rig.router, "not a TLS handshake")).toHaveLength(1);
  });
});
