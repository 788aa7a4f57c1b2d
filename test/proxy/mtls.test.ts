/**
 * mTLS both ways: a terminating listener that verifies client certificates (tls_policy
 * client_ca / verify_client), routes by them (client_subject, client_cn, client_fingerprint),
 * logs them, and tells a PROXY v2 target about them (PP2_TYPE_SSL); and a backend that shows a
 * client certificate to a TLS target that asks (a real redis-server with tls-auth-clients).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { AccessLog } from "../../src/observe/access-log.ts";
import { PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS, PP2_CLIENT_SSL } from "../../src/protocol/proxy-protocol.ts";
import { parseConfig } from "../../src/config/load.ts";
import { createRouter } from "../../src/proxy/create-router.ts";
import { captureLogger, dial, freePort, hasCommand, listen, ROOT, spawn, waitFor, type Behaviour } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";
import { CERTS, clientCerts, firstLine, openssl, proxyReader } from "../helpers/tls.ts";

const hasOpenssl = hasCommand("openssl");
const hasRedisServer = hasCommand("redis-server") && hasCommand("redis-cli");

function greeter(name: string): Behaviour {
  return { open: (peer) => peer.write(`${name}\n`), data: (peer, chunk) => peer.write(chunk), end: (peer) => peer.shutdown() };
}

const LISTENER_TLS = 'tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }';

describe.skipIf(!hasOpenssl)("client certificate verification on a terminating listener", () => {
  test('verify_client = "required": no certificate gets certificate_required (116) in TLS 1.3 and handshake_failure (40) in 1.2; nothing is dialled', async () => {
    await using app = listen(greeter("app"));
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "required" }
[backends.app]
targets = ["${app.address}"]
`);
    // -ign_eof: in TLS 1.3 the alert comes after the client's Finished; read until the server closes.
    expect((await openssl(router.port, ["-servername", "localhost", "-tls1_3", "-ign_eof"])).alert).toBe(116);
    expect((await openssl(router.port, ["-servername", "localhost", "-tls1_2", "-ign_eof"])).alert).toBe(40);
    expect(app.peers.length).toBe(0);
  });

  test("a certificate the client CA did not sign is closed after the handshake (tls_error), a signed one reaches the backend", async () => {
    await using certs = await clientCerts();
    await using app = listen(greeter("app"));
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "required" }
[backends.app]
targets = ["${app.address}"]
`);
    await expect(firstLine(router.port, { cert: readFileSync(certs.cert("rogue")), key: readFileSync(certs.key("rogue")) })).rejects.toThrow();
    await waitFor(() => router.matching("not verified").length > 0, 5000, "the warn line");
    expect(router.matching("client certificate CN=admin not verified").filter((line) => line.startsWith("warn "))).toHaveLength(1);
    expect(app.peers.length).toBe(0);
    expect(await firstLine(router.port, { cert: readFileSync(certs.cert("admin")), key: readFileSync(certs.key("admin")) })).toBe("app");
  });

  test('verify_client = "optional": no certificate is let in, a bad one is not', async () => {
    await using certs = await clientCerts();
    await using app = listen(greeter("app"));
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "optional" }
[backends.app]
targets = ["${app.address}"]
`);
    expect(await firstLine(router.port)).toBe("app");
    await expect(firstLine(router.port, { cert: readFileSync(certs.cert("rogue")), key: readFileSync(certs.key("rogue")) })).rejects.toThrow();
  });

  test("a certificate chosen by SNI verifies clients against the same client CA", async () => {
    await using certs = await clientCerts();
    await using app = listen(greeter("app"));
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = [{ cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }, { cert = "fixtures/tls/certs/db.pem", key = "fixtures/tls/certs/db.key" }]
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem" }
[backends.app]
targets = ["${app.address}"]
`);
    const admin = { cert: readFileSync(certs.cert("admin")), key: readFileSync(certs.key("admin")) };
    expect(await firstLine(router.port, { ...admin, servername: "db.example.com" })).toBe("app");
    expect((await openssl(router.port, ["-servername", "db.example.com", "-tls1_3", "-ign_eof"])).alert).toBe(116);
  });
});

describe.skipIf(!hasOpenssl)("routes by client certificate", () => {
  test("client_subject, client_cn and client_fingerprint pick the backend; others get the listener's", async () => {
    await using certs = await clientCerts();
    await using ops = listen(greeter("ops"));
    await using guests = listen(greeter("guests"));
    await using rest = listen(greeter("rest"));
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "rest"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "optional" }
[[listeners.routes]]
client_subject = "CN=admin,O=ops"
backend = "ops"
[[listeners.routes]]
client_fingerprint = ["${certs.fingerprint("guest").replaceAll(":", "").toLowerCase()}"]
client_cn = ["guest"]
backend = "guests"
[backends.ops]
targets = ["${ops.address}"]
[backends.guests]
targets = ["${guests.address}"]
[backends.rest]
targets = ["${rest.address}"]
`);
    const as = (name: "admin" | "guest") => ({ cert: readFileSync(certs.cert(name)), key: readFileSync(certs.key(name)) });
    expect(await firstLine(router.port, as("admin"))).toBe("ops");
    expect(await firstLine(router.port, as("guest"))).toBe("guests");
    expect(await firstLine(router.port)).toBe("rest");
  });

  test("no route and no default: closed (no_route) with one warn line, nothing dialled", async () => {
    await using certs = await clientCerts();
    await using ops = listen(greeter("ops"));
    const config = parseConfig(
      `
[[listeners]]
listen = "127.0.0.1:0"
backend = "ops"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem" }
[[listeners.routes]]
client_cn = ["admin"]
backend = "ops"
[backends.ops]
targets = ["${ops.address}"]
`,
      "toml",
      `${ROOT}test/router.toml`,
    );
    // The config always has a listener backend in tcp mode; take it away to test the route alone.
    config.listeners[0]!.backend = null;
    const log = captureLogger();
    const router = await createRouter(config, { logger: log.logger });
    try {
      const port = router.listeners[0]!.port;
      await expect(firstLine(port, { cert: readFileSync(certs.cert("guest")), key: readFileSync(certs.key("guest")) })).rejects.toThrow();
      await waitFor(() => router.stats().denied === 1, 5000, "the denied count");
      expect(log.matching("no route").filter((line) => line.startsWith("warn "))).toHaveLength(1);
      expect(ops.peers.length).toBe(0);
    } finally {
      await router.stop({ drainTimeout: 0 });
    }
  });

  test.each([
    [`mode = "tcp"\nbackend = "app"\n${LISTENER_TLS}\n[[listeners.routes]]\nclient_cn = ["a"]\nbackend = "app"`, "listeners[0].routes: only for mode"],
    [
      `mode = "sni"\nbackend = "app"\n[[listeners.routes]]\nclient_cn = ["a"]\nbackend = "app"`,
      "listeners[0].routes[0]: client_subject, client_cn and client_fingerprint need",
    ],
    [
      `backend = "app"\n${LISTENER_TLS}\ntls_policy = { client_ca = "fixtures/tls/certs/ca.pem" }\n[[listeners.routes]]\nclient_fingerprint = ["12"]\nbackend = "app"`,
      "listeners[0].routes[0].client_fingerprint[0]: expected a SHA-256 fingerprint",
    ],
    [
      `backend = "app"\n${LISTENER_TLS}\ntls_policy = { client_ca = "fixtures/tls/certs/ca.pem" }\n[[listeners.routes]]\nclient_subject = "admin"\nbackend = "app"`,
      'listeners[0].routes[0].client_subject: expected a subject such as "CN=admin,O=ops"',
    ],
    [
      `backend = "app"\n${LISTENER_TLS}\ntls_policy = { client_ca = "fixtures/tls/certs/ca.pem" }\n[[listeners.routes]]\nserver_names = ["a.example.com"]\nbackend = "app"`,
      "listeners[0].routes[0]: server_names and alpn are for mode",
    ],
  ])("config error %#", (listener, message) => {
    const toml = `[[listeners]]\nlisten = "127.0.0.1:0"\n${listener}\n[backends.app]\ntargets = ["127.0.0.1:1"]\n`;
    expect(() => parseConfig(toml, "toml", `${ROOT}test/router.toml`)).toThrow(message);
  });
});

describe.skipIf(!hasOpenssl)("the client certificate in the access log and in PROXY v2", () => {
  test("the access log carries client_subject and client_fingerprint (text and JSON)", async () => {
    await using certs = await clientCerts();
    await using app = listen(greeter("app"));
    const path = `${tmpdir()}/tcprouter-test-mtls-access-${process.pid}.log`;
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "optional" }
[backends.app]
targets = ["${app.address}"]
`);
    try {
      for (const format of ["text", "json"] as const) {
        const log = new AccessLog({ to: path, format, flushInterval: 10 });
        const detach = router.view.observe(log);
        expect(await firstLine(router.port, { cert: readFileSync(certs.cert("admin")), key: readFileSync(certs.key("admin")) })).toBe("app");
        await waitFor(() => router.stats().activeSessions === 0, 5000, "the session to close");
        detach();
        log.close();
      }
      const [text, json] = readFileSync(path, "utf8").trim().split("\n");
      expect(text).toContain(`client_subject="O=ops,CN=admin" client_fingerprint=${certs.fingerprint("admin")}`);
      expect(JSON.parse(json!)).toMatchObject({ client_subject: "O=ops,CN=admin", client_fingerprint: certs.fingerprint("admin") });
    } finally {
      rmSync(path, { force: true });
    }
  });

  test("send_proxy v2 after a terminating listener carries PP2_TYPE_SSL: flags, verify, version, CN, cipher", async () => {
    await using certs = await clientCerts();
    await using reader = await proxyReader();
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
${LISTENER_TLS}
tls_policy = { client_ca = "fixtures/tls/certs/ca.pem", verify_client = "optional" }
[backends.app]
targets = ["${reader.address}"]
send_proxy = "v2"
`);
    expect(
      await firstLine(router.port, {
        cert: readFileSync(certs.cert("admin")),
        key: readFileSync(certs.key("admin")),
        maxVersion: "TLSv1.2",
        ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384",
      }),
    ).toMatch(/^proxy v2 /);
    expect(await firstLine(router.port)).toMatch(/^proxy v2 /);
    const [withCert, without] = reader.headers;
    expect(withCert!.tlvs!.types).toEqual([0x20]);
    expect(withCert!.tlvs!.ssl).toEqual({
      client: PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS,
      verify: 0,
      version: "TLSv1.2",
      cipher: "ECDHE-ECDSA-AES256-GCM-SHA384",
      cn: "admin",
      certificate: true,
      verified: true,
    });
    expect(without!.tlvs!.ssl).toMatchObject({ client: PP2_CLIENT_SSL, verify: 0, version: "TLSv1.3", cn: null, certificate: false });
  });

  test.skipIf(!hasCommand("haproxy"))("HAProxy 2.6 accept-proxy takes the header with its SSL TLV and forwards the stream", async () => {
    const { startHaproxy } = await import("../helpers/tls.ts");
    await using app = listen(greeter("app"));
    await using haproxy = await startHaproxy(
      `frontend in\n  bind 127.0.0.1:{port} accept-proxy\n  default_backend app\nbackend app\n  server s ${app.address}\n`,
    );
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "hap"
${LISTENER_TLS}
[backends.hap]
targets = ["127.0.0.1:${haproxy.port}"]
send_proxy = "v2"
`);
    expect(await firstLine(router.port)).toBe("app");
  });
});

describe.skipIf(!hasOpenssl || !hasRedisServer)("mTLS to a target (redis-server with tls-auth-clients)", () => {
  async function tlsRedis() {
    const port = freePort();
    const child = spawn([
      "redis-server",
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      tmpdir(),
      "--tls-cert-file",
      `${CERTS}/localhost.pem`,
      "--tls-key-file",
      `${CERTS}/localhost.key`,
      "--tls-ca-cert-file",
      `${CERTS}/ca.pem`,
      "--tls-auth-clients",
      "yes",
    ]);
    await waitFor(() => child.stdoutText.includes("Ready to accept connections"), 10_000, "redis-server with TLS");
    return { port, [Symbol.asyncDispose]: () => child[Symbol.asyncDispose]() };
  }

  function routerTo(port: number, tls: string) {
    return startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
targets = ["127.0.0.1:${port}"]
retries = 0
tls = ${tls}
`);
  }

  async function ping(port: number): Promise<string> {
    await using peer = await dial(port);
    peer.write("PING\r\n");
    await waitFor(() => peer.received().length > 0 || peer.hungUp, 5000, "a reply or a close");
    return peer.text();
  }

  test("with the client certificate PING answers +PONG", async () => {
    await using certs = await clientCerts();
    await using redis = await tlsRedis();
    await using router = await routerTo(
      redis.port,
      `{ ca = "fixtures/tls/certs/ca.pem", servername = "localhost", cert = "${certs.cert("admin")}", key = "${certs.key("admin")}" }`,
    );
    expect(await ping(router.port)).toBe("+PONG\r\n");
  });

  test("without it (TLS 1.2) the target refuses the handshake: connect_failed", async () => {
    await using redis = await tlsRedis();
    await using router = await routerTo(redis.port, `{ ca = "fixtures/tls/certs/ca.pem", servername = "localhost", max_version = "TLSv1.2" }`);
    expect(await ping(router.port)).toBe("");
    await waitFor(() => router.stats().connectFailures === 1, 5000, "a failed connect");
  });

  test("without it (TLS 1.3) the handshake completes first, and the target closes the session at once: nothing is answered", async () => {
    await using redis = await tlsRedis();
    await using router = await routerTo(redis.port, `{ ca = "fixtures/tls/certs/ca.pem", servername = "localhost" }`);
    expect(await ping(router.port)).toBe("");
  });
});
