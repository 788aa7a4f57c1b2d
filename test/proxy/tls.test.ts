/**
 * TLS termination (listener `tls = { cert, key }`: TLS from clients, plaintext to the backend)
 * and origination (backend `tls = { servername, ca, verify }`: plaintext from clients, TLS to
 * the targets), with certificate verification on, end to end with real TLS peers.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { parseConfig } from "../../src/config/load.ts";
import { dial, freePort, hasCommand, listen, ROOT, spawnCli, waitFor, type Behaviour, type Peer } from "../helpers/net.ts";
import { bunTlsRequest, CA, CERTS, sClient, tlsRequest, tlsServer } from "../helpers/tls.ts";
import { startRouter } from "../helpers/router.ts";

const hasOpenssl = hasCommand("openssl");

/** A plain server that sends `NAME\n` when a connection opens, then echoes. */
function greeter(name: string): Behaviour {
  return { open: (peer) => peer.write(`${name}\n`), data: (peer, chunk) => peer.write(chunk), end: (peer) => peer.shutdown() };
}

/** A router with one terminating listener (the fixture `localhost` certificate) in front of `backend`. */
function terminating(backend: string): Promise<Awaited<ReturnType<typeof startRouter>>> {
  return startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }
[backends.app]
targets = ["${backend}"]
`);
}

/** A router with one plain listener whose backend dials `target` over TLS with `tls` (a TOML inline table). */
function originating(target: string, tls: string, extra = ""): Promise<Awaited<ReturnType<typeof startRouter>>> {
  return startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "secure"
[backends.secure]
targets = ["${target}"]
tls = ${tls}
${extra}
`);
}

/** A TLS session left open, to check it still works after a reload. */
async function openTls(port: number, servername: string): Promise<{ socket: tls.TLSSocket; roundTrip(text: string): Promise<string> }> {
  const socket = tls.connect({ host: "127.0.0.1", port, servername, ca: CA });
  let received = "";
  socket.on("data", (chunk) => (received += chunk.toString("latin1")));
  await waitFor(() => received.includes("\n"), 5000, "the greeting");
  return {
    socket,
    async roundTrip(text) {
      received = "";
      socket.write(text);
      await waitFor(() => received.length >= text.length, 5000, "the echo");
      return received;
    },
  };
}

/** Sends `ping\n` on a plain connection and waits for `lines` newline-terminated lines back, or a close. */
async function plainExchange(port: number, lines = 2): Promise<{ text: string; client: Peer }> {
  const client = await dial(port);
  client.write("ping\n");
  await waitFor(() => client.text().split("\n").length > lines || client.hungUp, 5000, "the reply");
  return { text: client.text(), client };
}

describe("termination: TLS from the client, plaintext to the backend", () => {
  test("node:tls and Bun's client verify the listener's certificate; the backend gets plaintext", async () => {
    await using app = listen(greeter("plain"));
    await using router = await terminating(app.address);
    const reply = await tlsRequest(router.port, { servername: "localhost" });
    expect(reply).toEqual({ cn: "localhost", authorized: true, alpn: null, greeting: "plain", echo: "ping\n" });
    expect((await app.peer(0)).text()).toBe("ping\n");
    expect(await bunTlsRequest(router.port, "localhost")).toEqual({ authorized: true, cn: "localhost", greeting: "plain" });
  });

  test.skipIf(!hasOpenssl)("openssl s_client verifies it too", async () => {
    await using app = listen(greeter("plain"));
    await using router = await terminating(app.address);
    const { code, stdout } = await sClient(router.port, "localhost");
    expect(code).toBe(0);
    expect(stdout).toContain("subject=CN = localhost");
    expect(stdout).toContain("Verify return code: 0 (ok)");
  });

  test("1 MiB each way through a terminated session arrives unchanged", async () => {
    await using app = listen({ data: (peer, chunk) => peer.write(chunk), end: (peer) => peer.shutdown(), open: (peer) => peer.write("go\n") });
    await using router = await terminating(app.address);
    const payload = Buffer.from(crypto.getRandomValues(new Uint8Array(1024 * 1024)).map((byte) => byte)).toString("latin1");
    const reply = await tlsRequest(router.port, { servername: "localhost", send: payload });
    expect(reply.echo === payload).toBe(true);
  }, 20_000);

  // Regression: a terminating listener started the session in `open`, which Bun also calls when
  // the handshake fails, so a plaintext client made the router dial the backend. TLS listeners
  // now have a `handshake` handler: the session starts on success and is closed on failure.
  test("a client that does not speak TLS is closed, and the backend is not dialled", async () => {
    await using app = listen(greeter("plain"));
    await using router = await terminating(app.address);
    await using client = await dial(router.port);
    client.write("PING\r\n");
    await waitFor(() => client.hungUp, 5000, "the router to close the connection");
    expect(client.text()).not.toContain("plain");
    await Bun.sleep(50);
    expect(app.peers).toHaveLength(0);
  });
});

describe("several certificates on one terminating listener, chosen by SNI", () => {
  /** localhost (the default), db.example.com, *.apps.example.com, and web.pem served as www.example.com only. */
  const MANY = `tls = [
  { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" },
  { cert = "fixtures/tls/certs/db.pem", key = "fixtures/tls/certs/db.key" },
  { cert = "fixtures/tls/certs/apps.pem", key = "fixtures/tls/certs/apps.key" },
  { cert = "fixtures/tls/certs/web.pem", key = "fixtures/tls/certs/web.key", names = ["www.example.com"] },
]`;
  const many = (backend: string) => startRouter(`[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "app"\n${MANY}\n[backends.app]\ntargets = ["${backend}"]\n`);

  test("each client gets the certificate for the name it asked for, verified; all reach the backend in plaintext", async () => {
    await using app = listen(greeter("plain"));
    await using router = await many(app.address);
    const cn = async (servername: string) => {
      const reply = await tlsRequest(router.port, { servername });
      expect(reply).toMatchObject({ authorized: true, greeting: "plain", echo: "ping\n" });
      return reply.cn;
    };
    expect(await cn("localhost")).toBe("localhost");
    expect(await cn("db.example.com")).toBe("db.example.com");
    expect(await cn("DB.Example.COM")).toBe("db.example.com");
    expect(await cn("x.apps.example.com")).toBe("*.apps.example.com");
    expect(await bunTlsRequest(router.port, "db.example.com")).toEqual({ authorized: true, cn: "db.example.com", greeting: "plain" });
    expect(await bunTlsRequest(router.port, "y.apps.example.com")).toEqual({ authorized: true, cn: "*.apps.example.com", greeting: "plain" });
    expect(app.peers).toHaveLength(6);
    await waitFor(() => router.matching("sni=x.apps.example.com").length === 1, 5000, "the session's log line with its server name");
    expect(router.matching("sni=db.example.com")).toHaveLength(3);
  });

  test("no SNI, an unknown name, and a name one label too deep for the wildcard get the first certificate", async () => {
    await using app = listen(greeter("plain"));
    await using router = await many(app.address);
    for (const servername of ["", "nope.example.com", "a.b.apps.example.com"]) {
      expect(await tlsRequest(router.port, { servername, ca: null })).toMatchObject({ cn: "localhost", greeting: "plain" });
    }
  });

  test("names = [...] replaces the names in the certificate", async () => {
    await using app = listen(greeter("plain"));
    await using router = await many(app.address);
    expect((await tlsRequest(router.port, { servername: "www.example.com", ca: null })).cn).toBe("web.example.com");
    expect((await tlsRequest(router.port, { servername: "web.example.com", ca: null })).cn).toBe("localhost");
  });

  test("an exact name beats a wildcard, whatever their order in the list", async () => {
    await using app = listen(greeter("plain"));
    await using router = await startRouter(`[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "app"\ntls = [
  { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" },
  { cert = "fixtures/tls/certs/apps.pem", key = "fixtures/tls/certs/apps.key" },
  { cert = "fixtures/tls/certs/web.pem", key = "fixtures/tls/certs/web.key", names = ["x.apps.example.com"] },
]\n[backends.app]\ntargets = ["${app.address}"]\n`);
    expect((await tlsRequest(router.port, { servername: "x.apps.example.com", ca: null })).cn).toBe("web.example.com");
    expect((await tlsRequest(router.port, { servername: "y.apps.example.com" })).cn).toBe("*.apps.example.com");
  });

  test.skipIf(!hasOpenssl)("openssl s_client -servername verifies the certificate it was given", async () => {
    await using app = listen(greeter("plain"));
    await using router = await many(app.address);
    const { code, stdout } = await sClient(router.port, "db.example.com");
    expect(code).toBe(0);
    expect(stdout).toContain("subject=CN = db.example.com");
    expect(stdout).toContain("Verify return code: 0 (ok)");
  });
});

describe("termination across a reload", () => {
  /** A temporary directory with cert.pem/key.pem copied from the fixture `name`, and a config using them. */
  function renewable(name: string) {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-tls-reload-"));
    const put = (fixture: string) => {
      copyFileSync(`${CERTS}/${fixture}.pem`, join(dir, "cert.pem"));
      copyFileSync(`${CERTS}/${fixture}.key`, join(dir, "key.pem"));
    };
    put(name);
    return { dir, put, source: join(dir, "tcprouter.toml"), [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
  }

  test("a reload after the certificate files were renewed serves the new certificate; open sessions carry on", async () => {
    using files = renewable("localhost");
    await using app = listen(greeter("plain"));
    const text = `[[listeners]]\nlisten = "127.0.0.1:${freePort()}"\nbackend = "app"\ntls = { cert = "${files.dir}/cert.pem", key = "${files.dir}/key.pem" }\n[backends.app]\ntargets = ["${app.address}"]\n`;
    await using router = await startRouter(text);
    expect((await tlsRequest(router.port, { servername: "localhost" })).cn).toBe("localhost");
    const open = await openTls(router.port, "localhost");
    expect(router.reload(parseConfig(text, "toml", files.source)).certificates).toEqual([]); // unchanged files: nothing to do
    files.put("db");
    expect(router.reload(parseConfig(text, "toml", files.source)).certificates).toEqual([`127.0.0.1:${router.port}`]);
    expect((await tlsRequest(router.port, { servername: "db.example.com" })).cn).toBe("db.example.com");
    expect(await tlsRequest(router.port, { servername: "", ca: null })).toMatchObject({ cn: "db.example.com" });
    expect(await open.roundTrip("still here\n")).toBe("still here\n");
    open.socket.destroy();
  });

  test("SIGHUP in a real process: renewed files are served to new clients, and the log says where", async () => {
    using files = renewable("localhost");
    await using app = listen(greeter("plain"));
    const port = freePort();
    writeFileSync(
      files.source,
      `[[listeners]]\nlisten = "127.0.0.1:${port}"\nbackend = "app"\ntls = { cert = "cert.pem", key = "key.pem" }\n[backends.app]\ntargets = ["${app.address}"]\n`,
    );
    await using child = spawnCli(["--config", files.source]);
    await child.stderrMatch(new RegExp(`listening on 127.0.0.1:${port}`));
    expect((await tlsRequest(port, { servername: "localhost" })).cn).toBe("localhost");
    files.put("web");
    child.proc.kill("SIGHUP");
    await child.stderrMatch(new RegExp(`SIGHUP: reloaded .*; new certificates on 127.0.0.1:${port}`));
    expect((await tlsRequest(port, { servername: "web.example.com" })).cn).toBe("web.example.com");
    child.proc.kill("SIGTERM");
    expect(await child.exited()).toBe(0);
  });

  test("a reload adds a certificate for a new name, and a removed one's name falls back to the first", async () => {
    await using app = listen(greeter("plain"));
    const port = freePort();
    const config = (certs: string[]) =>
      parseConfig(
        `[[listeners]]\nlisten = "127.0.0.1:${port}"\nbackend = "app"\ntls = [${certs.map((c) => `{ cert = "fixtures/tls/certs/${c}.pem", key = "fixtures/tls/certs/${c}.key" }`).join(", ")}]\n[backends.app]\ntargets = ["${app.address}"]\n`,
        "toml",
        `${ROOT}test/tls-routing.toml`,
      );
    await using router = await startRouter(
      `[[listeners]]\nlisten = "127.0.0.1:${port}"\nbackend = "app"\ntls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }\n[backends.app]\ntargets = ["${app.address}"]\n`,
    );
    expect((await tlsRequest(port, { servername: "db.example.com", ca: null })).cn).toBe("localhost");
    router.reload(config(["localhost", "db"]));
    expect((await tlsRequest(port, { servername: "db.example.com" })).cn).toBe("db.example.com");
    router.reload(config(["localhost", "web"]));
    expect((await tlsRequest(port, { servername: "db.example.com", ca: null })).cn).toBe("localhost");
    expect((await tlsRequest(port, { servername: "web.example.com" })).cn).toBe("web.example.com");
  });

  test("turning tls on or off on a kept listener, or a certificate file gone, fails the reload and changes nothing", async () => {
    using files = renewable("localhost");
    await using app = listen(greeter("plain"));
    const port = freePort();
    const base = `[[listeners]]\nlisten = "127.0.0.1:${port}"\nbackend = "app"\n[backends.app]\ntargets = ["${app.address}"]\n`;
    const withTls = base.replace('backend = "app"\n', `backend = "app"\ntls = { cert = "${files.dir}/cert.pem", key = "${files.dir}/key.pem" }\n`);
    await using router = await startRouter(withTls);
    expect(() => router.reload(parseConfig(base, "toml", files.source))).toThrow(
      `127.0.0.1:${port}: tls cannot be removed from a listener that stays open; use a new address, or restart`,
    );
    const parsed = parseConfig(withTls, "toml", files.source);
    rmSync(join(files.dir, "cert.pem"));
    expect(() => router.reload(parsed)).toThrow(`127.0.0.1:${port}: cannot read ${files.dir}/cert.pem: no such file`);
    copyFileSync(`${CERTS}/db.pem`, join(files.dir, "cert.pem")); // not the key's certificate (changed after the parse)
    expect(() => router.reload(parsed)).toThrow(
      `127.0.0.1:${port}: ${files.dir}/cert.pem with ${files.dir}/key.pem: not a usable certificate and key (key values mismatch)`,
    );
    expect((await tlsRequest(port, { servername: "localhost" })).cn).toBe("localhost");
    files.put("localhost");
    const other = String(freePort());
    await using plain = await startRouter(base.replace(String(port), other));
    const plainConfig = parseConfig(withTls.replace(String(port), other), "toml", files.source);
    expect(() => plain.reload(plainConfig)).toThrow(/tls cannot be added to a listener that stays open/);
  });
});

describe("origination: plaintext from the client, TLS to the target", () => {
  test("with ca, servername and verify: the target sees the server name; the client gets its greeting and echo", async () => {
    await using upstream = await tlsServer("localhost");
    await using router = await originating(upstream.address, '{ servername = "upstream.test", ca = "fixtures/tls/certs/ca.pem", verify = true }');
    await using exchange = (await plainExchange(router.port)).client;
    expect(exchange.text()).toBe("localhost sni=upstream.test alpn=-\nping\n");
    expect(upstream.sessions).toHaveLength(1);
  });

  test("without servername the certificate is checked against the target's address (an IP SAN here)", async () => {
    await using upstream = await tlsServer("localhost");
    await using router = await originating(upstream.address, '{ ca = "fixtures/tls/certs/ca.pem" }');
    await using exchange = (await plainExchange(router.port)).client;
    expect(exchange.text()).toMatch(/^localhost sni=\S+ alpn=-\nping\n$/);
  });

  test("a wrong servername fails verification: the client is closed, with a warn line", async () => {
    await using upstream = await tlsServer("localhost");
    await using router = await originating(upstream.address, '{ servername = "wrong.test", ca = "fixtures/tls/certs/ca.pem" }');
    const { text, client } = await plainExchange(router.port);
    await using _ = client;
    await waitFor(() => client.hungUp, 5000, "the client to be closed");
    expect(text).toBe("");
    expect(upstream.sessions).toHaveLength(0);
    const warns = router.lines.filter((line) => line.startsWith("warn "));
    expect(warns.join("\n")).toMatch(/secure.*(altname|wrong\.test|certificate|TLS)/i);
  });

  test("a certificate from an unknown CA fails verification: the client is closed, with a warn line", async () => {
    await using upstream = await tlsServer("other"); // signed by other-ca.pem, which the backend does not trust
    await using router = await originating(upstream.address, '{ servername = "upstream.test", ca = "fixtures/tls/certs/ca.pem" }');
    const { text, client } = await plainExchange(router.port);
    await using _ = client;
    await waitFor(() => client.hungUp, 5000, "the client to be closed");
    expect(text).toBe("");
    expect(upstream.sessions).toHaveLength(0);
    expect(router.lines.filter((line) => line.startsWith("warn ")).join("\n")).toMatch(/secure.*(verify|certificate|issuer|TLS)/i);
  });

  test("verify = false accepts that certificate", async () => {
    await using upstream = await tlsServer("other");
    await using router = await originating(upstream.address, '{ servername = "upstream.test", verify = false }');
    await using exchange = (await plainExchange(router.port)).client;
    expect(exchange.text()).toBe("other sni=upstream.test alpn=-\nping\n");
  });

  test("a target whose certificate does not verify is retried like a refused one", async () => {
    await using bad = await tlsServer("other");
    await using good = await tlsServer("localhost");
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "secure"
[backends.secure]
retries = 1
targets = ["${bad.address}", "${good.address}"]
tls = { servername = "upstream.test", ca = "fixtures/tls/certs/ca.pem" }
`);
    for (let i = 0; i < 2; i++) {
      await using exchange = (await plainExchange(router.port)).client;
      expect(exchange.text()).toBe("localhost sni=upstream.test alpn=-\nping\n");
    }
    expect([bad.sessions.length, good.sessions.length]).toEqual([0, 2]);
  });

  test("termination and origination together: TLS in, TLS out, each verified", async () => {
    await using upstream = await tlsServer("localhost");
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "secure"
tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }
[backends.secure]
targets = ["${upstream.address}"]
tls = { servername = "upstream.test", ca = "${CERTS}/ca.pem" }
`);
    expect(await tlsRequest(router.port, { servername: "localhost" })).toEqual({
      cn: "localhost",
      authorized: true,
      alpn: null,
      greeting: "localhost sni=upstream.test alpn=-",
      echo: "ping\n",
    });
  });
});
