/**
 * QuicInitialReader against a real QUIC client: Debian's ngtcp2 example client `gtlsclient`
 * (package ngtcp2-client, GnuTLS). It sends its Initials to a UDP socket on 127.0.0.1 that never
 * answers; the reader must find the hello in them. Skipped when gtlsclient is not installed.
 *
 * gtlsclient 0.12 ignores --sni: it sends the HOST argument as the server name, or "localhost"
 * when HOST is an address. To send "app.example", it runs in a private mount namespace whose
 * /etc/hosts maps that name to 127.0.0.1 (`unshare -rm`; skipped where namespaces are denied).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QuicInitialReader, type QuicInitialResult } from "../../src/protocol/quic.ts";

const GTLSCLIENT = Bun.which("gtlsclient");
const UNSHARE = Bun.which("unshare");
const canUnshare = UNSHARE !== null && Bun.spawnSync([UNSHARE, "-rm", "true"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;

if (GTLSCLIENT === null) console.warn("skipping the gtlsclient tests: gtlsclient not found (apt-get install ngtcp2-client)");
else if (!canUnshare) console.warn('skipping the gtlsclient "app.example" test: `unshare -rm` is not allowed here');

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

interface Capture {
  result: QuicInitialResult;
  datagrams: number;
  output: string;
}

/**
 * Runs gtlsclient against a silent UDP socket and feeds what it sends to a reader until the
 * reader finishes or `waitMs` passes; then stops the client and closes the socket.
 */
async function capture(command: (port: number) => string[], waitMs = 5000): Promise<Capture> {
  const reader = new QuicInitialReader();
  let datagrams = 0;
  let finished: () => void = () => {};
  const ended = new Promise<void>((resolve) => (finished = resolve));
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_socket, data) {
        datagrams++;
        if (reader.push(new Uint8Array(data)).state !== "need-more") finished();
      },
    },
  });
  cleanups.push(() => socket.close());
  const child = Bun.spawn(command(socket.port), { stdout: "ignore", stderr: "pipe" });
  cleanups.push(() => child.kill());
  const timer = setTimeout(finished, waitMs);
  await Promise.race([ended, child.exited]);
  clearTimeout(timer);
  child.kill();
  await child.exited;
  const output = (await new Response(child.stderr).text()).slice(-2000);
  return { result: reader.result, datagrams, output };
}

/** gtlsclient sending the given host name: in a mount namespace whose /etc/hosts maps it to 127.0.0.1. */
function withHostName(name: string): (port: number) => string[] {
  const dir = mkdtempSync(join(tmpdir(), "quic-interop-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const hosts = join(dir, "hosts");
  writeFileSync(hosts, `127.0.0.1 ${name}\n`);
  return (port) => [
    UNSHARE!,
    "-rm",
    "sh",
    "-c",
    'mount --bind "$0" /etc/hosts && exec "$@"',
    hosts,
    GTLSCLIENT!,
    "--timeout=5s",
    name,
    String(port),
    `https://${name}/`,
  ];
}

describe.skipIf(GTLSCLIENT === null)("gtlsclient (ngtcp2, GnuTLS)", () => {
  test.skipIf(!canUnshare)(
    'reads SNI "app.example" and ALPN "h3" from its QUIC v1 Initial',
    async () => {
      const { result, datagrams, output } = await capture(withHostName("app.example"));
      if (result.state !== "done") console.log(`gtlsclient said:\n${output}`);
      expect(result).toEqual({ state: "done", serverName: "app.example", alpn: ["h3"], version: 1 });
      expect(datagrams).toBeGreaterThan(0);
    },
    15_000,
  );

  test('for an IP address it sends "localhost"', async () => {
    const { result, output } = await capture((port) => [GTLSCLIENT!, "--timeout=5s", "--sni=app.example", "127.0.0.1", String(port), "https://app.example/"]);
    if (result.state !== "done") console.log(`gtlsclient said:\n${output}`);
    expect(result).toEqual({ state: "done", serverName: "localhost", alpn: ["h3"], version: 1 });
  }, 15_000);

  test("its QUIC v2 draft (0x709a50c4) is refused by version", async () => {
    const { result } = await capture((port) => [GTLSCLIENT!, "--timeout=5s", "-v", "v2draft", "127.0.0.1", String(port), "https://app.example/"]);
    expect(result).toEqual({ state: "error", reason: "unsupported QUIC version 0x709a50c4" });
  }, 15_000);
});
