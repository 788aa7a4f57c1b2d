/** ClientHelloReader, tlsAlert and server-name patterns: pure and table-driven, plus real TLS clients on loopback. */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { connect as tlsConnect } from "node:tls";
import {
  ALERT_HANDSHAKE_FAILURE,
  ALERT_UNRECOGNIZED_NAME,
  ClientHelloReader,
  MAX_CLIENT_HELLO_LENGTH,
  MAX_CLIENT_HELLO_WIRE_BYTES,
  parseServerNamePattern,
  readClientHello,
  tlsAlert,
  type ClientHelloResult,
} from "../../src/protocol/sni.ts";
import { buildClientHello, chunks, frame, helloFixtures, reframe, unframe } from "../helpers/client-hello.ts";

/** Feeds `pieces` in order; every result before the last must be "need-more". */
function feed(pieces: Uint8Array[]): ClientHelloResult {
  const reader = new ClientHelloReader();
  let result: ClientHelloResult = reader.result;
  for (const [index, piece] of pieces.entries()) {
    result = reader.push(piece);
    if (index < pieces.length - 1 && result.state !== "need-more") {
      throw new Error(`finished early, at piece ${index + 1} of ${pieces.length}: ${JSON.stringify(result)}`);
    }
  }
  return result;
}

/** Pushes one byte at a time and stops at the first result that is not "need-more". */
function feedOneByOne(bytes: Uint8Array): ClientHelloResult {
  const reader = new ClientHelloReader();
  for (const byte of bytes) {
    const result = reader.push(Uint8Array.of(byte));
    if (result.state !== "need-more") return result;
  }
  return reader.result;
}

const fixtures = helloFixtures();

describe("real ClientHellos (fixtures captured from Bun, node:tls and openssl s_client)", () => {
  test.each(fixtures.map((fixture) => [fixture.file, fixture] as const))("%s", (_, fixture) => {
    const expected: ClientHelloResult = { state: "done", serverName: fixture.serverName, alpn: fixture.alpn };
    const copy = fixture.bytes.slice();
    expect(readClientHello(fixture.bytes)).toEqual(expected);
    expect(feed(chunks(fixture.bytes, 1))).toEqual(expected);
    expect(feed(chunks(fixture.bytes, 7))).toEqual(expected);
    const in100ByteRecords = reframe(fixture.bytes, 100);
    expect(in100ByteRecords.length).toBeGreaterThan(fixture.bytes.length);
    expect(feed([in100ByteRecords])).toEqual(expected);
    expect(feed(chunks(in100ByteRecords, 1))).toEqual(expected);
    expect(feed(chunks(reframe(fixture.bytes, 1), 3))).toEqual(expected);
    expect(readClientHello(fixture.bytes.subarray(0, -1))).toEqual({ state: "need-more" });
    expect(fixture.bytes).toEqual(copy);
  });

  test("the fixtures cover a post-quantum key share, no SNI and TLS 1.2", () => {
    // Bun's client offers X25519MLKEM768 (group 0x11ec, 1216-byte share): a hello over 1 KiB.
    expect(fixtures.find((fixture) => fixture.file.startsWith("bun-"))!.bytes.length).toBeGreaterThan(1400);
    expect(fixtures.some((fixture) => fixture.serverName === null)).toBe(true);
    expect(fixtures.some((fixture) => fixture.file.includes("tls12"))).toBe(true);
  });
});

describe("large ClientHellos", () => {
  test.each([
    ["a 4 KiB + 1 hello", 4097],
    ["an 8 KiB hello", 8192],
    ["the largest hello in one record", 16_384 - 4],
    ["the largest hello, over two records", MAX_CLIENT_HELLO_LENGTH],
  ])("reads %s", (_, bodyLength) => {
    const hello = buildClientHello({ serverName: "big.example.com", alpn: ["h2"], keyShare: 1216, bodyLength });
    const expected: ClientHelloResult = { state: "done", serverName: "big.example.com", alpn: ["h2"] };
    expect(readClientHello(hello)).toEqual(expected);
    expect(feed(chunks(hello, 1))).toEqual(expected);
    expect(feed(chunks(reframe(hello, 100), 1))).toEqual(expected);
    expect(feed(chunks(reframe(hello, 100), 1460))).toEqual(expected);
  });

  test("refuses a hello longer than 16 KiB as soon as its length is read", () => {
    const hello = buildClientHello({ bodyLength: MAX_CLIENT_HELLO_LENGTH + 1 });
    const reader = new ClientHelloReader();
    expect(reader.push(hello.subarray(0, 9))).toEqual({ state: "error", reason: "ClientHello too long (16385 bytes, at most 16384)" });
  });

  test(`refuses records that take more than ${MAX_CLIENT_HELLO_WIRE_BYTES} bytes`, () => {
    const largest = buildClientHello({ bodyLength: MAX_CLIENT_HELLO_LENGTH });
    expect(reframe(largest, 5).length).toBeGreaterThan(MAX_CLIENT_HELLO_WIRE_BYTES);
    expect(reframe(largest, 6).length).toBeLessThanOrEqual(MAX_CLIENT_HELLO_WIRE_BYTES);
    expect(feedOneByOne(reframe(largest, 6))).toEqual({ state: "done", serverName: "db.example.com", alpn: [] });
    expect(feedOneByOne(reframe(largest, 5))).toEqual({ state: "error", reason: "ClientHello records take more than 32768 bytes" });
    // 1-byte records: fine for a small hello, refused before the buffered bytes pass the limit
    expect(readClientHello(reframe(buildClientHello({ bodyLength: 5000 }), 1))).toMatchObject({ state: "done" });
    const reader = new ClientHelloReader();
    let consumed = 0;
    for (const byte of reframe(buildClientHello({ bodyLength: 6000 }), 1)) {
      consumed++;
      if (reader.push(Uint8Array.of(byte)).state !== "need-more") break;
    }
    expect(reader.result).toEqual({ state: "error", reason: "ClientHello records take more than 32768 bytes" });
    expect(consumed).toBeLessThanOrEqual(MAX_CLIENT_HELLO_WIRE_BYTES + 5);
  });
});

/** A hello's handshake bytes with `patch` applied, framed in one record. */
function patched(patch: (handshake: Uint8Array) => Uint8Array, options = {}): Uint8Array {
  return frame(patch(unframe(buildClientHello(options))), 16_384);
}

/**
 * Where the extensions length is in `buildClientHello`'s handshake bytes: the 4-byte header,
 * then version 2, random 32, session id 1 + 32, cipher suites 2 + 4, compression 1 + 1.
 */
const EXTENSIONS = 4 + 75;

describe("ClientHelloReader rejects", () => {
  const good = buildClientHello({ alpn: ["h2"] });
  test.each<[string, Uint8Array, string]>([
    ["HTTP", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "not a TLS handshake"],
    ["an SSH banner", new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"), "not a TLS handshake"],
    ["a PROXY header", new TextEncoder().encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "not a TLS handshake"],
    ["an SSLv2 hello", Uint8Array.of(0x80, 0x2e, 0x01, 0x03, 0x01), "not a TLS handshake"],
    ["an alert record first", Uint8Array.of(21, 3, 1, 0, 2, 2, 40), "not a TLS handshake"],
    ["record version 2.0", Uint8Array.of(22, 2, 0, 0, 4), "not a TLS handshake"],
    ["an empty record", Uint8Array.of(22, 3, 1, 0, 0), "empty TLS handshake record"],
    ["a record over 16 KiB", Uint8Array.of(22, 3, 1, 0x40, 0x01), "TLS record too long (16385 bytes, at most 16384)"],
    ["a ServerHello", Uint8Array.of(22, 3, 3, 0, 4, 2, 0, 0, 70), "not a ClientHello (handshake type 2)"],
    ["a hostile hello length", Uint8Array.of(22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff), "ClientHello too long (16777215 bytes, at most 16384)"],
    ["a tiny hello", Uint8Array.of(22, 3, 1, 0, 4, 1, 0, 0, 3), "ClientHello too short (3 bytes)"],
    [
      "a change_cipher_spec record inside the hello",
      Uint8Array.of(...reframe(good, 50).subarray(0, 55), 20, 3, 3, 0, 1, 1),
      "TLS record of type 20 before the ClientHello ended",
    ],
    ["body version 2.0", patched((h) => h.with(4, 2)), "unsupported ClientHello version 2.3"],
    ["a session id of 33 bytes", patched((h) => h.with(4 + 34, 33)), "malformed ClientHello: bad session_id"],
    ["an odd cipher suites length", patched((h) => h.with(4 + 68, 3)), "malformed ClientHello: bad cipher_suites"],
    ["no compression methods", patched((h) => h.with(4 + 73, 0)), "malformed ClientHello: bad compression_methods"],
    ["an extensions length one too long", patched((h) => h.with(EXTENSIONS + 1, h[EXTENSIONS + 1]! + 1)), "malformed ClientHello: bad extensions length"],
    ["an extension overrunning the hello", patched((h) => h.with(EXTENSIONS + 4, 0x7f)), "malformed ClientHello: bad extension 0 length"],
    [
      "a server_name list length that disagrees",
      patched((h) => h.with(EXTENSIONS + 7, h[EXTENSIONS + 7]! - 1)),
      "malformed ClientHello: bad server_name extension",
    ],
    ["a server name with a space", patched((h) => h.with(EXTENSIONS + 13, 0x20)), "server name is not a host name (byte 0x20)"],
    ["a server name with a NUL", patched((h) => h.with(EXTENSIONS + 11, 0)), "server name is not a host name (byte 0x00)"],
    ["an empty ALPN protocol", patched((h) => h.with(EXTENSIONS + 2 + 4 + 19 + 4 + 2, 0), { alpn: ["h2"] }), "malformed ClientHello: bad ALPN extension"],
    ["two server_name extensions", twoServerNames(), "malformed ClientHello: two server_name extensions"],
  ])("%s", (_, bytes, reason) => {
    expect(readClientHello(bytes)).toEqual({ state: "error", reason });
    expect(feedOneByOne(bytes)).toEqual({ state: "error", reason });
  });

  test("non-TLS bytes on the first byte, without waiting for more", () => {
    expect(new ClientHelloReader().push(Uint8Array.of(0x47))).toEqual({ state: "error", reason: "not a TLS handshake" });
  });
});

function twoServerNames(): Uint8Array {
  const handshake = unframe(buildClientHello({ serverName: "a.example" }));
  const sni = handshake.subarray(EXTENSIONS + 2, EXTENSIONS + 2 + 4 + 14);
  const extensionsLength = ((handshake[EXTENSIONS]! << 8) | handshake[EXTENSIONS + 1]!) + sni.length;
  const body = [...handshake.subarray(4, EXTENSIONS), extensionsLength >> 8, extensionsLength & 0xff, ...sni, ...handshake.subarray(EXTENSIONS + 2)];
  return frame(Uint8Array.from([1, 0, body.length >> 8, body.length & 0xff, ...body]), 16_384);
}

describe("ClientHelloReader results", () => {
  test("stay the same after done or error, whatever is pushed next", () => {
    const reader = new ClientHelloReader();
    const done = reader.push(buildClientHello());
    expect(done).toEqual({ state: "done", serverName: "db.example.com", alpn: [] });
    expect(reader.push(new TextEncoder().encode("garbage"))).toBe(done);
    expect(reader.result).toBe(done);
    const failing = new ClientHelloReader();
    const error = failing.push(Uint8Array.of(0));
    expect(failing.push(buildClientHello())).toBe(error);
  });

  test("done as soon as the hello ends, ignoring the bytes after it (0-RTT data)", () => {
    const hello = buildClientHello();
    const withEarlyData = Uint8Array.from([...hello, 20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 3, 1, 2, 3]);
    expect(readClientHello(withEarlyData)).toEqual({ state: "done", serverName: "db.example.com", alpn: [] });
  });

  test("a hello without extensions, and without SNI", () => {
    const body = [3, 3, ...new Array(32).fill(1), 0, 0, 2, 0x13, 0x01, 1, 0];
    expect(readClientHello(frame(Uint8Array.from([1, 0, 0, body.length, ...body]), 100))).toEqual({ state: "done", serverName: null, alpn: [] });
    expect(readClientHello(buildClientHello({ serverName: null, alpn: ["http/1.1"] }))).toEqual({ state: "done", serverName: null, alpn: ["http/1.1"] });
  });

  test("keeps the server name as sent (matching ignores case)", () => {
    expect(readClientHello(buildClientHello({ serverName: "DB.Example.COM." }))).toMatchObject({ serverName: "DB.Example.COM." });
  });

  test("an empty push changes nothing", () => {
    const reader = new ClientHelloReader();
    expect(reader.push(new Uint8Array(0))).toEqual({ state: "need-more" });
  });
});

describe("tlsAlert", () => {
  test("is a fatal alert record", () => {
    expect(tlsAlert(ALERT_UNRECOGNIZED_NAME)).toEqual(Uint8Array.of(21, 3, 3, 0, 2, 2, 112));
    expect(tlsAlert(ALERT_HANDSHAKE_FAILURE)).toEqual(Uint8Array.of(21, 3, 3, 0, 2, 2, 40));
  });

  test.each([-1, 256, 1.5, Number.NaN])("refuses description %p", (description) => {
    expect(() => tlsAlert(description)).toThrow(RangeError);
  });
});

describe("parseServerNamePattern", () => {
  test.each([
    ["db.example.com", "db.example.com"],
    ["DB.Example.COM.", "db.example.com"],
    ["*.example.com", "*.example.com"],
    ["*.com", "*.com"],
    ["_acme.example", "_acme.example"],
    ["localhost", "localhost"],
  ])("%p → %p", (input, normalized) => {
    expect(parseServerNamePattern(input)).toBe(normalized);
  });

  test.each([
    ["*", '"*": a lone "*" matches every name: use a default route'],
    ["*.", '"*.": a lone "*" matches every name: use a default route'],
    ["f*.example.com", '"f*.example.com": "*" is only allowed as the whole first label ("*.example.com")'],
    ["*.*.example.com", '"*.*.example.com": "*" is only allowed as the whole first label ("*.example.com")'],
    ["a..b", '"a..b": empty label'],
    ["", '"": empty label'],
    ["-a.example", '"-a.example": "-a" is not a valid DNS label'],
    ["a b.example", '"a b.example": "a b" is not a valid DNS label'],
    [`${"a".repeat(64)}.example`, `"${"a".repeat(64)}.example": "${"a".repeat(64)}" is not a valid DNS label`],
    [`${"a.".repeat(127)}ab`, `"${"a.".repeat(127)}ab": longer than 253 characters`],
  ])("refuses %p", (input, message) => {
    expect(() => parseServerNamePattern(input)).toThrow(message);
  });
});

// ── Real TLS clients ───────────────────────────────────────────────────────────────────────

interface Seen {
  reader: ClientHelloReader;
  chunks: number;
}

/** A listener that reads each client's hello as it arrives, answers unrecognized_name and closes. */
let listener: TCPSocketListener<Seen> | null = null;
const results: ClientHelloResult[] = [];

afterEach(() => {
  listener?.stop(true);
  listener = null;
  results.length = 0;
});

function openSeen(socket: Socket<Seen>): void {
  socket.data = { reader: new ClientHelloReader(), chunks: 0 };
}

function dataSeen(socket: Socket<Seen>, chunk: Uint8Array): void {
  socket.data.chunks++;
  const result = socket.data.reader.push(chunk);
  if (result.state === "need-more") return;
  results.push(result);
  socket.end(tlsAlert(ALERT_UNRECOGNIZED_NAME));
}

function listen(): number {
  listener = Bun.listen<Seen>({
    hostname: "127.0.0.1",
    port: 0,
    socket: { binaryType: "uint8array", open: openSeen, data: dataSeen, error() {} },
  });
  return listener.port;
}

describe("real TLS clients get unrecognized_name", () => {
  test("Bun's TLS client", async () => {
    const port = listen();
    const handshake = Promise.withResolvers<string>();
    await Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { serverName: "db.example.com" },
      socket: {
        data() {},
        handshake(_, success, error) {
          handshake.resolve(success ? "success" : String(error?.message));
        },
        close() {
          handshake.resolve("closed");
        },
        error() {},
      },
    });
    expect(await handshake.promise).toContain("TLSV1_ALERT_UNRECOGNIZED_NAME");
    expect(results).toEqual([{ state: "done", serverName: "db.example.com", alpn: [] }]);
  });

  test("node:tls with ALPN", async () => {
    const port = listen();
    const failed = Promise.withResolvers<string>();
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: "api.example.com", ALPNProtocols: ["h2", "http/1.1"] });
    socket.on("error", (error: NodeJS.ErrnoException) => failed.resolve(String(error.code)));
    socket.on("close", () => failed.resolve("closed"));
    expect(await failed.promise).toBe("ERR_SSL_TLSV1_ALERT_UNRECOGNIZED_NAME");
    expect(results).toEqual([{ state: "done", serverName: "api.example.com", alpn: ["h2", "http/1.1"] }]);
  });

  test.skipIf(Bun.which("openssl") === null)("openssl s_client -servername -alpn", async () => {
    const port = listen();
    const child = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", "x.example.com", "-alpn", "h2"], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
    expect(code).toBe(1);
    expect(stderr).toContain("alert number 112");
    expect(results).toEqual([{ state: "done", serverName: "x.example.com", alpn: ["h2"] }]);
  });
});
