/**
 * A terminating listener's TLS policy (`tls_policy`: versions, TLS 1.2 ciphers, curves; a
 * certificate's own ciphers), checked with `openssl s_client` against what Bun 1.4.5 really
 * negotiates, and the keys Bun cannot honour, refused by the config with one line each.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { hasCommand, listen, ROOT, type Behaviour } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";
import { openssl } from "../helpers/tls.ts";

const hasOpenssl = hasCommand("openssl");

function greeter(name: string): Behaviour {
  return { open: (peer) => peer.write(`${name}\n`), data: (peer, chunk) => peer.write(chunk), end: (peer) => peer.shutdown() };
}

/** A terminating listener with the `localhost` certificate (and db.example.com by SNI), `policy` as TOML. */
function withPolicy(backend: string, policy: string, certificates = "") {
  return startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = [{ cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }${certificates}]
tls_policy = ${policy}
[backends.app]
targets = ["${backend}"]
`);
}

function configErrors(toml: string): string[] {
  try {
    parseConfig(toml, "toml", `${ROOT}test/router.toml`);
    return [];
  } catch (error) {
    return String((error as Error).message).split("\n");
  }
}

describe.skipIf(!hasOpenssl)("tls_policy on a terminating listener (openssl s_client)", () => {
  test("min_version TLSv1.3 refuses a TLS 1.2 client with protocol_version (70)", async () => {
    await using backend = listen(greeter("app"));
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ min_version = "TLSv1.3" }');
    const old = await openssl(router.port, ["-servername", "localhost", "-tls1_2"]);
    expect(old.alert).toBe(70);
    const ok = await openssl(router.port, ["-servername", "localhost", "-tls1_3"]);
    expect(ok.protocol).toBe("TLSv1.3");
  });

  test("max_version TLSv1.2 refuses a TLS 1.3-only client with protocol_version (70)", async () => {
    await using backend = listen(greeter("app"));
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ max_version = "TLSv1.2" }');
    expect((await openssl(router.port, ["-servername", "localhost", "-tls1_3"])).alert).toBe(70);
    expect((await openssl(router.port, ["-servername", "localhost"])).protocol).toBe("TLSv1.2");
  });

  test("ciphers limits TLS 1.2: another suite gets handshake_failure (40), the listed one is used", async () => {
    await using backend = listen(greeter("app"));
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" }');
    const other = await openssl(router.port, ["-servername", "localhost", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    expect(other.alert).toBe(40);
    const cbc = await openssl(router.port, ["-servername", "localhost", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"]);
    expect(cbc.alert).toBe(40);
    const listed = await openssl(router.port, ["-servername", "localhost", "-tls1_2"]);
    expect(listed.cipher).toBe("ECDHE-ECDSA-AES128-GCM-SHA256");
  });

  test("curves: a client offering only another group gets handshake_failure (40), in TLS 1.3 and 1.2", async () => {
    await using backend = listen(greeter("app"));
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ curves = "P-256" }');
    expect((await openssl(router.port, ["-servername", "localhost", "-groups", "X25519"])).alert).toBe(40);
    expect((await openssl(router.port, ["-servername", "localhost", "-tls1_2", "-groups", "X25519"])).alert).toBe(40);
    const ok = await openssl(router.port, ["-servername", "localhost", "-groups", "X25519:P-256"]);
    expect(ok.output).toMatch(/Server Temp Key: ECDH, prime256v1|Server Temp Key: P-256/);
  });

  test("the listener's versions also hold for a certificate chosen by SNI; its own ciphers override the policy's", async () => {
    await using backend = listen(greeter("app"));
    const db = ', { cert = "fixtures/tls/certs/db.pem", key = "fixtures/tls/certs/db.key", ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384" }';
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ max_version = "TLSv1.2", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" }', db);
    expect((await openssl(router.port, ["-servername", "db.example.com", "-tls1_3"])).alert).toBe(70);
    const sni = await openssl(router.port, ["-servername", "db.example.com"]);
    expect(sni.output).toContain("CN = db.example.com");
    expect(sni.cipher).toBe("ECDHE-ECDSA-AES256-GCM-SHA384");
    expect((await openssl(router.port, ["-servername", "db.example.com", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])).alert).toBe(40);
    expect((await openssl(router.port, ["-servername", "localhost"])).cipher).toBe("ECDHE-ECDSA-AES128-GCM-SHA256");
  });

  test("a reload that renews the default certificate keeps the policy (min_version)", async () => {
    await using backend = listen(greeter("app"));
    await using router = await withPolicy(`127.0.0.1:${backend.port}`, '{ min_version = "TLSv1.3" }');
    const next = parseConfig(
      `
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = { cert = "fixtures/tls/certs/default.pem", key = "fixtures/tls/certs/default.key" }
tls_policy = { min_version = "TLSv1.3" }
[backends.app]
targets = ["127.0.0.1:${backend.port}"]
`,
      "toml",
      `${ROOT}test/router.toml`,
    );
    expect(router.reload(next).certificates).toHaveLength(1);
    const renewed = await openssl(router.port, ["-servername", "localhost", "-tls1_3"]);
    expect(renewed.output).toContain("CN = default.example.com");
    expect((await openssl(router.port, ["-servername", "localhost", "-tls1_2"])).alert).toBe(70);
  });
});

describe("tls_policy in the config", () => {
  const listener = (policy: string, tls = '{ cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }') => `
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = ${tls}
${policy}
[backends.app]
targets = ["127.0.0.1:1"]
`;

  test("a valid policy parses into the listener's tls", () => {
    const config = parseConfig(
      listener('tls_policy = { min_version = "TLSv1.2", max_version = "TLSv1.3", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256", curves = "X25519:P-256" }'),
      "toml",
      `${ROOT}test/router.toml`,
    );
    expect(config.listeners[0]!.tls!.policy).toEqual({
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.3",
      ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256",
      curves: "X25519:P-256",
      clientCa: null,
      verifyClient: "off",
    });
  });

  test.each([
    ['tls_policy = { min_version = "TLSv1.1" }', 'listeners[0].tls_policy.min_version: unknown TLS version "TLSv1.1" (use "TLSv1.2" or "TLSv1.3")'],
    ['tls_policy = { min_version = "TLSv1.3", max_version = "TLSv1.2" }', "listeners[0].tls_policy: min_version TLSv1.3 is above max_version TLSv1.2"],
    ['tls_policy = { ciphers = "NOPE-CIPHER" }', "listeners[0].tls_policy.ciphers: "],
    ['tls_policy = { ciphers = "TLS_AES_128_GCM_SHA256" }', "names only TLS 1.3 suites"],
    ['tls_policy = { curves = "X448" }', "listeners[0].tls_policy.curves: "],
    ['tls_policy = { ciphersuites = "TLS_AES_128_GCM_SHA256" }', "listeners[0].tls_policy.ciphersuites: TLS 1.3 cipher suites cannot be chosen on this Bun"],
    ['tls_policy = { verify_client = "required" }', "listeners[0].tls_policy.client_ca: missing"],
    ['tls_policy = { verify_client = "sometimes", client_ca = "fixtures/tls/certs/ca.pem" }', 'unknown verify_client "sometimes"'],
    ['tls_policy = { client_ca = "fixtures/tls/certs/nope.pem" }', "listeners[0].tls_policy.client_ca: cannot read"],
  ])("%s is refused", (policy, message) => {
    expect(configErrors(listener(policy)).join("\n")).toContain(message);
  });

  test.each(["min_version", "max_version", "curves"])("%s per certificate is refused (an SNI context does not apply it on this Bun)", (key) => {
    const tls = `{ cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key", ${key} = "${key === "curves" ? "P-256" : "TLSv1.3"}" }`;
    expect(configErrors(listener("", tls)).join("\n")).toContain(`listeners[0].tls.${key}: not per certificate on this Bun`);
  });

  test("tls_policy without tls is refused", () => {
    const toml = `
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls_policy = { min_version = "TLSv1.3" }
[backends.app]
targets = ["127.0.0.1:1"]
`;
    expect(configErrors(toml).join("\n")).toContain("listeners[0].tls_policy: only with tls");
  });
});

/**
 * Blocked on Bun 1.4.5: TLS 1.3 cipher suites cannot be chosen (BoringSSL). Proof: a listener
 * whose cipher list names only TLS_AES_128_GCM_SHA256 besides a TLS 1.2 suite still lets a
 * client that offers only TLS_AES_256_GCM_SHA384 in; hence `ciphersuites` is a config error.
 * When this test fails, Bun honours TLS 1.3 suites: add `ciphersuites` to tls_policy.
 */
describe.skipIf(!hasOpenssl)("facts: TLS 1.3 suites on Bun.listen", () => {
  test("a TLS 1.3 suite left out of ciphers is still negotiated", async () => {
    const { readFileSync } = await import("node:fs");
    const certs = `${ROOT}test/fixtures/tls/certs`;
    const server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      tls: {
        cert: readFileSync(`${certs}/localhost.pem`, "utf8"),
        key: readFileSync(`${certs}/localhost.key`, "utf8"),
        ciphers: "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
      },
      socket: { data() {}, handshake: (socket) => void socket.end() },
    });
    try {
      const result = await openssl(server.port, ["-servername", "localhost", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"]);
      expect(result.cipher).toBe("TLS_AES_256_GCM_SHA384");
    } finally {
      server.stop(true);
    }
  });
});
