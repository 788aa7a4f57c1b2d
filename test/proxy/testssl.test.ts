/**
 * testssl.sh against a terminating listener with a strict `tls_policy` (TLS 1.2 minimum, only
 * AEAD ECDHE suites for TLS 1.2): what a client can really negotiate, seen by an outside
 * scanner rather than by our own openssl calls. It must find no TLS 1.0/1.1 (nor SSL), no CBC
 * suite and no suite without forward secrecy. A listener without a policy is scanned too, so
 * the test shows it would see a CBC suite if one were offered (Bun's default list has some).
 *
 * testssl is slow (about 15 s a scan): only `-p -E` (protocols, ciphers per protocol), JSON
 * output, the system openssl. Skipped, with a message, where testssl is not installed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST, hasCommand, listen, run } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

const hasTestssl = hasCommand("testssl");
if (!hasTestssl) console.warn("skipping test/proxy/testssl.test.ts: testssl is not installed (Debian package testssl.sh)");

const STRICT_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";

/** One offered suite, from a `cipher-tls1_2_xc02b` finding: `TLS 1.2   xc02b   ECDHE-ECDSA-AES128-GCM-SHA256   ECDH 253   AESGCM   128   TLS_…`. */
interface Offered {
  protocol: string;
  name: string;
  keyExchange: string;
  encryption: string;
}

interface Scan {
  /** id → finding for the protocol lines (SSLv2 … TLS1_3). */
  protocols: Map<string, string>;
  ciphers: Offered[];
}

const dir = mkdtempSync(join(tmpdir(), "tcprouter-testssl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function testssl(port: number, name: string): Promise<Scan> {
  const json = join(dir, `${name}.json`);
  const done = await run(
    [
      "testssl",
      "--quiet",
      "--color",
      "0",
      "--warnings",
      "off",
      "--openssl=/usr/bin/openssl",
      "--connect-timeout",
      "5",
      "--openssl-timeout",
      "5",
      "-p",
      "-E",
      "--jsonfile",
      json,
      `${HOST}:${port}`,
    ],
    100_000,
  );
  if (done.code !== 0) throw new Error(`testssl exited ${done.code}:\n${done.stdout}${done.stderr}`);
  const findings = JSON.parse(readFileSync(json, "utf8")) as { id: string; finding: string }[];
  const protocols = new Map<string, string>();
  const ciphers: Offered[] = [];
  for (const { id, finding } of findings) {
    if (/^(SSLv2|SSLv3|TLS1|TLS1_1|TLS1_2|TLS1_3)$/.test(id)) protocols.set(id, finding);
    const match = /^(SSLv\d|TLS 1(?:\.\d)?)\s+x\w+\s+(\S+)\s+(\S+(?: \d+)?)\s+(\S+)\s+\d+/.exec(finding);
    if (id.startsWith("cipher-") && match !== null) ciphers.push({ protocol: match[1]!, name: match[2]!, keyExchange: match[3]!, encryption: match[4]! });
  }
  return { protocols, ciphers };
}

function terminating(backend: string, policy: string): string {
  return `
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
tls = { cert = "fixtures/tls/certs/localhost.pem", key = "fixtures/tls/certs/localhost.key" }
${policy}
[backends.app]
targets = ["${backend}"]
`;
}

describe.skipIf(!hasTestssl)("testssl.sh against a terminating listener", () => {
  test("a strict policy offers TLS 1.2 and 1.3 only, and in TLS 1.2 only the AEAD ECDHE suites it lists", async () => {
    await using backend = listen({});
    await using router = await startRouter(terminating(`127.0.0.1:${backend.port}`, `tls_policy = { min_version = "TLSv1.2", ciphers = "${STRICT_CIPHERS}" }`));
    const scan = await testssl(router.port, "strict");
    expect(Object.fromEntries(scan.protocols)).toMatchObject({
      SSLv2: "not offered",
      SSLv3: "not offered",
      TLS1: "not offered",
      TLS1_1: "not offered",
      TLS1_2: "offered",
    });
    expect(scan.protocols.get("TLS1_3")).toStartWith("offered");
    expect(scan.ciphers.filter((c) => c.protocol !== "TLS 1.2" && c.protocol !== "TLS 1.3")).toEqual([]);
    const tls12 = scan.ciphers.filter((c) => c.protocol === "TLS 1.2");
    expect(tls12.length).toBeGreaterThan(0);
    for (const suite of tls12) {
      expect(STRICT_CIPHERS.split(":")).toContain(suite.name);
      expect(suite.keyExchange).toStartWith("ECDH"); // forward secret: no static RSA key exchange
      expect(["AESGCM", "ChaCha20"]).toContain(suite.encryption); // AEAD: no CBC
      expect(suite.name).not.toMatch(/CBC|-SHA$/);
    }
    // TLS 1.3 suites are all AEAD with (EC)DHE by design.
    for (const suite of scan.ciphers.filter((c) => c.protocol === "TLS 1.3")) expect(suite.name).toMatch(/^TLS_(AES_\d+_GCM|CHACHA20_POLY1305)_SHA\d+$/);
  }, 120_000);

  test("without a policy the same scan sees Bun's default list, CBC suites included (the check above can fail)", async () => {
    await using backend = listen({});
    await using router = await startRouter(terminating(`127.0.0.1:${backend.port}`, ""));
    const scan = await testssl(router.port, "default");
    const tls12 = scan.ciphers.filter((c) => c.protocol === "TLS 1.2");
    expect(tls12.some((c) => !["AESGCM", "ChaCha20"].includes(c.encryption))).toBe(true);
  }, 120_000);
});
