/**
 * The PROXY protocol with a real peer (issue 5): HAProxy in front of tcprouter
 * (`send-proxy` / `send-proxy-v2` → listener `accept_proxy`) and behind it (backend
 * `send_proxy` → HAProxy `bind ... accept-proxy`), plus the connections a listener with
 * `accept_proxy` must close: an untrusted source, a missing, malformed or late header.
 *
 * Clients connect from 127.0.0.2 (or .3) so that the real client address differs from the
 * proxy's (127.0.0.1). Where the address arrives, a `proxyReader` server says what it read:
 * `proxy vN SOURCE -> DESTINATION`.
 */
import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { encodeProxyV1, encodeProxyV2 } from "../../src/protocol/proxy-protocol.ts";
import { waitFor } from "../helpers/net.ts";
import { CERTS, dialFrom, hasHaproxy, pem, proxyReader, startHaproxy, tlsRequest, tlsServer, type NetClient } from "../helpers/tls.ts";
import { startRouter } from "../helpers/router.ts";

/** Sends `hello\n` and waits for the reader's line and the echo (or a close). */
async function exchange(client: NetClient, ms = 5000): Promise<string> {
  await client.write("hello\n");
  await waitFor(() => client.text().endsWith("hello\n") || client.closed, ms, "the reply through the chain");
  return client.text();
}

/** tcprouter behind HAProxy: `accept_proxy` from 127.0.0.1, forwarding with `send_proxy = "v1"` to a reader. */
async function behindHaproxy(haproxySends: "send-proxy" | "send-proxy-v2", listenerExtra = "") {
  const reader = await proxyReader();
  const router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
accept_proxy = true
trusted = ["127.0.0.1/32"]
${listenerExtra}
[backends.app]
targets = ["${reader.address}"]
send_proxy = "v1"
`);
  const haproxy = await startHaproxy(
    `frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  server tcprouter 127.0.0.1:${router.port} ${haproxySends}\n`,
  );
  return {
    reader,
    router,
    haproxy,
    async [Symbol.asyncDispose]() {
      await haproxy[Symbol.asyncDispose]();
      await router[Symbol.asyncDispose]();
      await reader[Symbol.asyncDispose]();
    },
  };
}

describe.skipIf(!hasHaproxy)("HAProxy in front: send-proxy(-v2) → accept_proxy", () => {
  for (const directive of ["send-proxy-v2", "send-proxy"] as const) {
    test(`${directive}: the client address is the real client's, in logs and in the header sent on`, async () => {
      await using chain = await behindHaproxy(directive);
      await using client = await dialFrom(chain.haproxy.port, "127.0.0.2");
      const clientPort = client.socket.localPort!;
      // HAProxy's header was removed: the reader saw one header (tcprouter's), then "hello".
      expect(await exchange(client)).toMatch(new RegExp(`^proxy v1 127\\.0\\.0\\.2:${clientPort} -> 127\\.0\\.0\\.1:\\d+\nhello\n$`));
      expect(chain.reader.headers).toHaveLength(1);
      client.socket.end();
      await waitFor(() => chain.router.matching(`session 127.0.0.2:${clientPort} → app`).length === 1, 5000, "the session's debug line");
    });
  }

  // Regression: a session that read a PROXY header sent its own listener address on as the
  // destination; like HAProxy (accept-proxy + send-proxy) it now relays the destination it was
  // given, the address the client dialled.
  test("a proxy chain relays the destination the client dialled (HAProxy's frontend), as HAProxy does", async () => {
    await using chain = await behindHaproxy("send-proxy-v2");
    await using client = await dialFrom(chain.haproxy.port, "127.0.0.2");
    expect(await exchange(client)).toBe(`proxy v1 127.0.0.2:${client.socket.localPort} -> 127.0.0.1:${chain.haproxy.port}\nhello\n`);
  });

  test("source ACLs apply to the address from the header", async () => {
    await using chain = await behindHaproxy("send-proxy-v2", 'deny = ["127.0.0.3/32"]');
    await using denied = await dialFrom(chain.haproxy.port, "127.0.0.3");
    await denied.write("hello\n");
    await denied.closedWithin();
    expect(chain.reader.connections).toBe(0);
    await using allowed = await dialFrom(chain.haproxy.port, "127.0.0.2");
    expect(await exchange(allowed)).toStartWith("proxy v1 127.0.0.2:");
    expect(chain.router.view.stats().denied).toBe(1);
  });

  test("an SNI listener behind HAProxy routes by name and sees the real client", async () => {
    await using db = await tlsServer("db");
    await using web = await tlsServer("web");
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
mode = "sni"
accept_proxy = true
trusted = ["127.0.0.1/32"]
[[listeners.routes]]
server_names = ["db.example.com"]
backend = "db"
[[listeners.routes]]
server_names = ["web.example.com"]
backend = "web"
[backends.db]
targets = ["${db.address}"]
[backends.web]
targets = ["${web.address}"]
`);
    await using haproxy = await startHaproxy(
      `frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  server tcprouter 127.0.0.1:${router.port} send-proxy-v2\n`,
    );
    for (const name of ["db", "web"]) {
      const reply = await tlsRequest(haproxy.port, { servername: `${name}.example.com`, localAddress: "127.0.0.2" });
      expect([reply.cn, reply.authorized, reply.greeting]).toEqual([`${name}.example.com`, true, `${name} sni=${name}.example.com alpn=-`]);
    }
    await waitFor(() => router.matching("session 127.0.0.2:").length === 2, 5000, "two session lines with the real client");
  });
});

describe.skipIf(!hasHaproxy)("HAProxy behind: send_proxy → accept-proxy", () => {
  for (const version of ["v1", "v2"] as const) {
    test(`send_proxy = "${version}": HAProxy reads the client's address from tcprouter's header`, async () => {
      await using reader = await proxyReader();
      await using haproxy = await startHaproxy(
        `frontend fe\n  bind 127.0.0.1:{port} accept-proxy\n  default_backend be\nbackend be\n  server reader ${reader.address} send-proxy\n`,
      );
      await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "haproxy"
[backends.haproxy]
targets = ["127.0.0.1:${haproxy.port}"]
send_proxy = "${version}"
`);
      await using client = await dialFrom(router.port, "127.0.0.2");
      // HAProxy passes on what it read: the client tcprouter saw, and the address the client dialled.
      expect(await exchange(client)).toBe(`proxy v1 127.0.0.2:${client.socket.localPort} -> 127.0.0.1:${router.port}\nhello\n`);
    });
  }

  // Regression: with a TLS backend the PROXY header was written through the TLS socket, inside
  // TLS, where the PROXY protocol (and HAProxy's `accept-proxy ssl`, nginx's
  // `listen ssl proxy_protocol`) wants it first on the TCP connection, before the ClientHello.
  // The session now connects in clear, writes the header, then starts TLS (upgradeTLS).
  test("with a TLS backend the header goes first, before the TLS handshake (HAProxy: accept-proxy ssl)", async () => {
    const combined = `${tmpdir()}/tcprouter-test-localhost-${process.pid}.pem`;
    writeFileSync(combined, pem("localhost.pem") + pem("localhost.key"));
    try {
      await using reader = await proxyReader();
      await using haproxy = await startHaproxy(
        `frontend fe\n  bind 127.0.0.1:{port} accept-proxy ssl crt ${combined}\n  default_backend be\nbackend be\n  server reader ${reader.address} send-proxy\n`,
      );
      await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "haproxy"
[backends.haproxy]
targets = ["127.0.0.1:${haproxy.port}"]
send_proxy = "v2"
tls = { servername = "localhost", ca = "${CERTS}/ca.pem" }
`);
      await using client = await dialFrom(router.port, "127.0.0.2");
      expect(await exchange(client, 2000)).toBe(`proxy v1 127.0.0.2:${client.socket.localPort} -> 127.0.0.1:${router.port}\nhello\n`);
    } finally {
      rmSync(combined, { force: true });
    }
  });
});

describe("what a listener with accept_proxy closes before dialling", () => {
  /** A listener trusting `trusted`, forwarding to a reader (which would count any dial). */
  async function guarded(trusted: string, extra = "") {
    const reader = await proxyReader();
    const router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
accept_proxy = true
trusted = ["${trusted}"]
${extra}
[backends.app]
targets = ["${reader.address}"]
`);
    return {
      reader,
      router,
      async [Symbol.asyncDispose]() {
        await router[Symbol.asyncDispose]();
        await reader[Symbol.asyncDispose]();
      },
    };
  }

  test("a valid header from an untrusted source", async () => {
    await using rig = await guarded("127.0.0.5/32");
    for (const header of [
      encodeProxyV1({ host: "192.0.2.1", port: 5000 }, { host: "127.0.0.1", port: 80 }),
      encodeProxyV2({ host: "192.0.2.1", port: 5000 }, { host: "127.0.0.1", port: 80 }),
    ]) {
      await using client = await dialFrom(rig.router.port, "127.0.0.1");
      await client.write(Buffer.concat([header, Buffer.from("hello\n")]));
      await client.closedWithin();
    }
    expect(rig.reader.connections).toBe(0);
    expect(rig.router.matching("untrusted").length).toBeGreaterThan(0);
  });

  test("a missing header (plain bytes) or a malformed one from a trusted source", async () => {
    await using rig = await guarded("127.0.0.1/32");
    for (const bytes of ["hello\r\n", "PROXY TCP4 999.0.0.1 127.0.0.1 5000 80\r\n", "PROXY TCP4 192.0.2.1 127.0.0.1 5000\r\n", "\r\n\r\n\0\r\nQUIT\n\x99"]) {
      await using client = await dialFrom(rig.router.port, "127.0.0.1");
      await client.write(bytes);
      await client.closedWithin();
    }
    expect(rig.reader.connections).toBe(0);
    expect(rig.router.view.stats().denied).toBe(4);
    expect(rig.router.matching("debug session").filter((line) => line.includes("proxy_error"))).toHaveLength(4);
  });

  test("a trusted source that sends no header is closed after hello_timeout", async () => {
    await using rig = await guarded("127.0.0.1/32", 'hello_timeout = "300ms"');
    await using client = await dialFrom(rig.router.port, "127.0.0.1");
    const started = performance.now();
    await client.closedWithin(3000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(rig.reader.connections).toBe(0);
    expect(rig.router.matching("no complete PROXY header within 300 ms").length).toBeGreaterThan(0);
  });

  test("a header in 1-byte segments is read, removed, and the address used", async () => {
    await using rig = await guarded("127.0.0.1/32");
    await using client = await dialFrom(rig.router.port, "127.0.0.1");
    const header = encodeProxyV2({ host: "2001:db8::7", port: 4242 }, { host: "2001:db8::1", port: 443 });
    for (const byte of header) {
      await client.write(Uint8Array.of(byte));
      await Bun.sleep(1);
    }
    await client.write("hello\n");
    await waitFor(() => rig.reader.connections === 1, 5000, "the dial");
    client.socket.end();
    await waitFor(() => rig.router.matching("session [2001:db8::7]:4242 → app").length === 1, 5000, "the session line with the header's address");
  });
});
