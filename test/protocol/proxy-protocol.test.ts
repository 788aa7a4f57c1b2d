/** PROXY protocol v1/v2: encoders and ProxyHeaderReader, pure and table-driven. */
import { describe, expect, test } from "bun:test";
import {
  MAX_PROXY_V1_LENGTH,
  MAX_PROXY_V2_LENGTH,
  ProxyHeaderReader,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyEndpoint,
  type ProxyHeader,
  type ProxyHeaderResult,
} from "../../src/protocol/proxy-protocol.ts";

const text = (value: string) => new TextEncoder().encode(value);
const hex = (value: string) => Uint8Array.from(Buffer.from(value.replace(/\s+/g, ""), "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const SIGNATURE = "0d0a0d0a000d0a515549540a";

function read(bytes: Uint8Array): ProxyHeaderResult {
  return new ProxyHeaderReader().push(bytes);
}

/** Pushes one byte at a time until the result is not "need-more". */
function readOneByOne(bytes: Uint8Array): ProxyHeaderResult {
  const reader = new ProxyHeaderReader();
  for (const byte of bytes) {
    const result = reader.push(Uint8Array.of(byte));
    if (result.state !== "need-more") return result;
  }
  return reader.result;
}

const endpoint = (host: string, port: number): ProxyEndpoint => ({ host, port });

describe("encodeProxyV1", () => {
  test.each<[string, ProxyEndpoint | null, ProxyEndpoint | null, string]>([
    ["IPv4", endpoint("192.168.0.1", 56324), endpoint("192.168.0.11", 443), "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"],
    ["IPv6", endpoint("2001:db8::1", 1), endpoint("::1", 65535), "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"],
    ["IPv4-mapped on both sides", endpoint("::ffff:127.0.0.1", 5000), endpoint("::ffff:127.0.0.2", 6379), "PROXY TCP4 127.0.0.1 127.0.0.2 5000 6379\r\n"],
    ["IPv4 to IPv6 (mapped, in hex groups)", endpoint("127.0.0.1", 5000), endpoint("::1", 6379), "PROXY TCP6 ::ffff:7f00:1 ::1 5000 6379\r\n"],
    ["a zone id dropped", endpoint("fe80::1%eth0", 5000), endpoint("fe80::2", 22), "PROXY TCP6 fe80::1 fe80::2 5000 22\r\n"],
    ["port 0", endpoint("10.0.0.1", 0), endpoint("10.0.0.2", 0), "PROXY TCP4 10.0.0.1 10.0.0.2 0 0\r\n"],
    ["no source", null, endpoint("127.0.0.1", 80), "PROXY UNKNOWN\r\n"],
    ["a unix socket", endpoint("/tmp/client.sock", 0), endpoint("127.0.0.1", 80), "PROXY UNKNOWN\r\n"],
    ["a hostname", endpoint("localhost", 1), endpoint("127.0.0.1", 80), "PROXY UNKNOWN\r\n"],
    ["a port out of range", endpoint("127.0.0.1", 65536), endpoint("127.0.0.1", 80), "PROXY UNKNOWN\r\n"],
  ])("%s", (_, source, destination, line) => {
    expect(new TextDecoder().decode(encodeProxyV1(source, destination))).toBe(line);
  });
});

describe("encodeProxyV2", () => {
  test("IPv4: the bytes HAProxy sends for the same connection", () => {
    // HAProxy's send-proxy-v2 header for 172.19.0.1:42578 → 172.19.0.3:80 (seriousben/experiment-proxy-protocol).
    expect(toHex(encodeProxyV2(endpoint("172.19.0.1", 42578), endpoint("172.19.0.3", 80)))).toBe(`${SIGNATURE}2111000cac130001ac130003a6520050`);
  });

  test("IPv6", () => {
    expect(toHex(encodeProxyV2(endpoint("2001:db8::1", 443), endpoint("::1", 8443)))).toBe(
      `${SIGNATURE}21210024 20010db8000000000000000000000001 00000000000000000000000000000001 01bb 20fb`.replace(/ /g, ""),
    );
  });

  test("LOCAL with no addresses when they are unknown", () => {
    expect(toHex(encodeProxyV2(null, null))).toBe(`${SIGNATURE}20000000`);
    expect(toHex(encodeProxyV2(endpoint("/run/app.sock", 0), endpoint("127.0.0.1", 80)))).toBe(`${SIGNATURE}20000000`);
  });
});

describe("round trips through ProxyHeaderReader", () => {
  const pairs: [string, ProxyEndpoint, ProxyEndpoint, "tcp4" | "tcp6"][] = [
    ["IPv4", endpoint("203.0.113.7", 51234), endpoint("10.0.0.5", 6379), "tcp4"],
    ["IPv4 extremes", endpoint("255.255.255.255", 65535), endpoint("0.0.0.0", 0), "tcp4"],
    ["IPv6", endpoint("2001:db8:85a3::8a2e:370:7334", 40000), endpoint("fe80::1", 443), "tcp6"],
    ["IPv6 extremes", endpoint("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), endpoint("::", 0), "tcp6"],
  ];
  const payload = text("GET / HTTP/1.1\r\n\r\n");

  for (const [version, encode] of [
    [1, encodeProxyV1],
    [2, encodeProxyV2],
  ] as const) {
    test.each(pairs)(`v${version} %s`, (_, source, destination, family) => {
      const header = encode(source, destination);
      const stream = Uint8Array.from([...header, ...payload]);
      const expected: ProxyHeaderResult = { state: "done", version, command: "proxy", family, source, destination, headerLength: header.length };
      expect(read(stream)).toEqual(expected);
      expect(readOneByOne(stream)).toEqual(expected);
      for (let cut = 0; cut <= stream.length; cut++) {
        const reader = new ProxyHeaderReader();
        reader.push(stream.subarray(0, cut));
        expect(reader.push(stream.subarray(cut))).toEqual(expected);
      }
      expect(stream.subarray(header.length)).toEqual(payload);
    });

    test(`v${version} unknown addresses`, () => {
      const header = encode(null, null);
      expect(read(header)).toEqual({
        state: "done",
        version,
        command: version === 1 ? "proxy" : "local",
        family: "unknown",
        source: null,
        destination: null,
        headerLength: header.length,
      });
    });
  }
});

describe("ProxyHeaderReader accepts", () => {
  const done = (version: 1 | 2, rest: Partial<ProxyHeader> & { headerLength: number }): ProxyHeaderResult => ({
    state: "done",
    version,
    command: "proxy",
    family: "unknown",
    source: null,
    destination: null,
    ...rest,
  });

  test.each<[string, Uint8Array, ProxyHeaderResult]>([
    [
      "the spec's v1 example, before an HTTP request",
      text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"),
      done(1, { family: "tcp4", source: endpoint("192.168.0.1", 56324), destination: endpoint("192.168.0.11", 443), headerLength: 47 }),
    ],
    [
      "the longest TCP4 line (56 bytes)",
      text("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
      done(1, { family: "tcp4", source: endpoint("255.255.255.255", 65535), destination: endpoint("255.255.255.255", 65535), headerLength: 56 }),
    ],
    [
      "the longest TCP6 line (104 bytes), upper case",
      text(`PROXY TCP6 ${"FFFF:".repeat(7)}FFFF ${"ffff:".repeat(7)}ffff 65535 65535\r\n`),
      done(1, {
        family: "tcp6",
        source: endpoint(`${"ffff:".repeat(7)}ffff`, 65535),
        destination: endpoint(`${"ffff:".repeat(7)}ffff`, 65535),
        headerLength: 104,
      }),
    ],
    ["UNKNOWN, short form", text("PROXY UNKNOWN\r\n"), done(1, { headerLength: 15 })],
    [
      "UNKNOWN, worst case (107 bytes): the rest of the line is ignored",
      text(`PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 65535\r\n`),
      done(1, { headerLength: MAX_PROXY_V1_LENGTH }),
    ],
    [
      "HAProxy's v2 header, before an HTTP request",
      hex(`${SIGNATURE}2111000cac130001ac130003a6520050 474554202f20485454502f312e310d0a`),
      done(2, { family: "tcp4", source: endpoint("172.19.0.1", 42578), destination: endpoint("172.19.0.3", 80), headerLength: 28 }),
    ],
    [
      "v2 with TLVs (ALPN, AUTHORITY, NOOP): their types listed, no SSL",
      hex(`${SIGNATURE}21110024 7f000001 7f000002 1388 18eb  010002 6832  02000b 6578616d706c652e636f6d  040002 0000`),
      done(2, {
        family: "tcp4",
        source: endpoint("127.0.0.1", 5000),
        destination: endpoint("127.0.0.2", 6379),
        headerLength: 16 + 36,
        tlvs: { types: [1, 2, 4], ssl: null },
      }),
    ],
    [
      "v2 IPv4-mapped IPv6",
      hex(`${SIGNATURE}21210024 00000000000000000000ffff7f000001 00000000000000000000ffff7f000002 1388 18eb`),
      done(2, { family: "tcp6", source: endpoint("::ffff:127.0.0.1", 5000), destination: endpoint("::ffff:127.0.0.2", 6379), headerLength: 52 }),
    ],
    ["v2 LOCAL with addresses present: skipped", hex(`${SIGNATURE}2011000c 7f000001 7f000002 1388 18eb`), done(2, { command: "local", headerLength: 28 })],
    ["v2 PROXY UNSPEC", hex(`${SIGNATURE}21000000`), done(2, { headerLength: 16 })],
    ["v2 UDP over IPv4 (not ours: unknown)", hex(`${SIGNATURE}2112000c 7f000001 7f000002 1388 18eb`), done(2, { headerLength: 28 })],
    ["v2 unix stream", Uint8Array.from([...hex(`${SIGNATURE}213100d8`), ...new Uint8Array(216)]), done(2, { headerLength: 232 })],
    [
      `v2 at the length cap (${MAX_PROXY_V2_LENGTH} bytes)`,
      Uint8Array.from([...hex(`${SIGNATURE}21111000 7f000001 7f000002 1388 18eb 04 0ff1`), ...new Uint8Array(4081)]),
      done(2, {
        family: "tcp4",
        source: endpoint("127.0.0.1", 5000),
        destination: endpoint("127.0.0.2", 6379),
        headerLength: 16 + 4096,
        tlvs: { types: [4], ssl: null },
      }),
    ],
  ])("%s", (_, bytes, expected) => {
    expect(read(bytes)).toEqual(expected);
    expect(readOneByOne(bytes)).toEqual(expected);
  });
});

describe("ProxyHeaderReader rejects", () => {
  const v1 = (line: string) => text(line);
  test.each<[string, Uint8Array, string]>([
    ["HTTP", text("GET / HTTP/1.1\r\n"), "not a PROXY protocol header"],
    ["TLS", Uint8Array.of(22, 3, 1, 0, 200), "not a PROXY protocol header"],
    ["lower-case proxy", text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "not a PROXY protocol header"],
    ["PROXY without a space", text("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "not a PROXY protocol header"],
    ["a PRI (HTTP/2) preface", text("PRI * HTTP/2.0\r\n"), "not a PROXY protocol header"],
    ["v1 ending in LF only", v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "PROXY v1: the line must end with CRLF"],
    ["v1 with a lone CR", v1("PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n"), "PROXY v1: CR without LF"],
    ["v1 with a tab", v1("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), "PROXY v1: unexpected byte 0x09"],
    ["v1 with a NUL", v1("PROXY TCP4 1.2.3.4\0"), "PROXY v1: unexpected byte 0x00"],
    ["v1 with UTF-8", v1("PROXY TCP4 é"), "PROXY v1: unexpected byte 0xc3"],
    ["v1 TCP5", v1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), 'PROXY v1: unknown protocol "TCP5" in "PROXY TCP5 1.2.3.4 5.6.7.8 1 2"'],
    ["v1 with no protocol", v1("PROXY \r\n"), 'PROXY v1: unknown protocol "" in "PROXY "'],
    ["v1 with two spaces", v1("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), 'PROXY v1: expected 4 fields after the protocol in "PROXY TCP4  1.2.3.4 5.6.7.8 1 2"'],
    ["v1 missing a port", v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), 'PROXY v1: expected 4 fields after the protocol in "PROXY TCP4 1.2.3.4 5.6.7.8 1"'],
    [
      "v1 with a trailing space",
      v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
      'PROXY v1: expected 4 fields after the protocol in "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "',
    ],
    [
      "v1 with a leading-zero octet",
      v1("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
      'PROXY v1: "01.2.3.4" is not an IPv4 address in "PROXY TCP4 01.2.3.4 5.6.7.8 1 2"',
    ],
    ["v1 TCP4 with IPv6", v1("PROXY TCP4 ::1 ::1 1 2\r\n"), 'PROXY v1: "::1" is not an IPv4 address in "PROXY TCP4 ::1 ::1 1 2"'],
    ["v1 TCP6 with IPv4", v1("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), 'PROXY v1: "1.2.3.4" is not an IPv6 address in "PROXY TCP6 1.2.3.4 ::1 1 2"'],
    ["v1 with a leading-zero port", v1("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), 'PROXY v1: "01" is not a port in "PROXY TCP4 1.2.3.4 5.6.7.8 01 2"'],
    ["v1 with port 65536", v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), 'PROXY v1: "65536" is not a port in "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536"'],
    ["v1 with a negative port", v1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), 'PROXY v1: "-1" is not a port in "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2"'],
    ["v1 longer than 107 bytes", v1(`PROXY UNKNOWN ${"x".repeat(200)}\r\n`), "PROXY v1: no CRLF in the first 107 bytes"],
    ["v1 whose CRLF would be bytes 107 and 108", v1(`PROXY UNKNOWN ${"x".repeat(92)}\r\n`), "PROXY v1: no CRLF in the first 107 bytes"],
    ["a v2 signature with a wrong byte", hex("0d0a0d0a000d0a515549540b21"), "not a PROXY protocol header"],
    ["CRLF CRLF (an empty HTTP request)", text("\r\n\r\nGET"), "not a PROXY protocol header"],
    ["v2 version 1", hex(`${SIGNATURE}11110000`), "PROXY v2: unsupported version 1"],
    ["v2 version 3", hex(`${SIGNATURE}31`), "PROXY v2: unsupported version 3"],
    ["v2 command 2", hex(`${SIGNATURE}22`), "PROXY v2: unknown command 2"],
    ["v2 family 4", hex(`${SIGNATURE}2141`), "PROXY v2: unknown address family 4"],
    ["v2 transport 3", hex(`${SIGNATURE}2113`), "PROXY v2: unknown transport protocol 3"],
    ["v2 longer than the cap", hex(`${SIGNATURE}21111001`), `PROXY v2: header too long (4097 bytes, at most ${MAX_PROXY_V2_LENGTH})`],
    ["v2 at the spec's maximum", hex(`${SIGNATURE}2111ffff`), `PROXY v2: header too long (65535 bytes, at most ${MAX_PROXY_V2_LENGTH})`],
    ["v2 TCP4 with 11 address bytes", hex(`${SIGNATURE}2111000b`), "PROXY v2: 11 address bytes, family 1 needs 12"],
    ["v2 TCP6 with 12 address bytes", hex(`${SIGNATURE}2121000c`), "PROXY v2: 12 address bytes, family 2 needs 36"],
    ["v2 unix with 0 address bytes", hex(`${SIGNATURE}21310000`), "PROXY v2: 0 address bytes, family 3 needs 216"],
  ])("%s", (_, bytes, reason) => {
    expect(read(bytes)).toEqual({ state: "error", reason });
    expect(readOneByOne(bytes)).toEqual({ state: "error", reason });
  });

  test("as soon as a byte cannot belong to a header", () => {
    expect(new ProxyHeaderReader().push(text("G"))).toEqual({ state: "error", reason: "not a PROXY protocol header" });
    const reader = new ProxyHeaderReader();
    expect(reader.push(text("PROX"))).toEqual({ state: "need-more" });
    expect(reader.push(text("I"))).toEqual({ state: "error", reason: "not a PROXY protocol header" });
    expect(new ProxyHeaderReader().push(hex("0d0a0d0a01"))).toEqual({ state: "error", reason: "not a PROXY protocol header" });
  });
});

describe("ProxyHeaderReader results", () => {
  test("wait for the whole header: a partial one is need-more", () => {
    const header = encodeProxyV2(endpoint("::1", 1), endpoint("::1", 2));
    expect(read(header.subarray(0, header.length - 1))).toEqual({ state: "need-more" });
    expect(read(text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"))).toEqual({ state: "need-more" });
    expect(read(new Uint8Array(0))).toEqual({ state: "need-more" });
  });

  test("stay the same once finished, and the input is never changed", () => {
    const stream = Uint8Array.from([...encodeProxyV1(endpoint("1.2.3.4", 1), endpoint("5.6.7.8", 2)), 1, 2, 3]);
    const copy = stream.slice();
    const reader = new ProxyHeaderReader();
    const done = reader.push(stream);
    expect(reader.push(text("PROXY garbage"))).toBe(done);
    expect(reader.result).toBe(done);
    expect(stream).toEqual(copy);
    const failing = new ProxyHeaderReader();
    const error = failing.push(text("x"));
    expect(failing.push(stream)).toBe(error);
  });

  test("never throw, and splitting never changes the result: 20,000 mutated headers", () => {
    let state = 99;
    const random = () => (state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) / 4_294_967_296;
    const below = (n: number) => Math.floor(random() * n);
    const bases = [
      encodeProxyV1(endpoint("1.2.3.4", 1), endpoint("5.6.7.8", 2)),
      encodeProxyV1(endpoint("2001:db8::1", 443), endpoint("::1", 8443)),
      encodeProxyV1(null, null),
      encodeProxyV2(endpoint("1.2.3.4", 1), endpoint("5.6.7.8", 2)),
      encodeProxyV2(endpoint("2001:db8::1", 443), endpoint("::1", 8443)),
      encodeProxyV2(null, null),
    ];
    const counts = { done: 0, "need-more": 0, error: 0 };
    for (let i = 0; i < 20_000; i++) {
      const bytes = Uint8Array.from([...bases[below(bases.length)]!, ...Array.from({ length: below(8) }, () => below(256))]);
      for (let flips = 1 + below(3); flips > 0; flips--) {
        const at = below(bytes.length);
        bytes[at] = random() < 0.5 ? bytes[at]! ^ (1 << below(8)) : below(256);
      }
      const whole = read(bytes);
      const reader = new ProxyHeaderReader();
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + below(20);
        reader.push(bytes.subarray(at, at + size));
        at += size;
      }
      expect(reader.result).toEqual(whole);
      if (whole.state === "done") expect(whole.headerLength).toBeLessThanOrEqual(bytes.length);
      counts[whole.state]++;
    }
    expect(counts.done).toBeGreaterThan(1000);
    expect(counts.error).toBeGreaterThan(1000);
  });
});
