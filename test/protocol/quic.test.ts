import { describe, expect, test } from "bun:test";
import { clientInitialKeys, clientInitialSecret, headerProtectionMask, openPayload } from "../../src/protocol/quic-crypto.ts";
import { isQuicInitial, MAX_INITIAL_PACKETS, QuicInitialReader, type QuicInitialResult } from "../../src/protocol/quic.ts";
import {
  PING,
  V1,
  V2,
  ackFrame,
  clientKeys,
  concat,
  cryptoFrame,
  cryptoFrames,
  helloDatagrams,
  helloHandshake,
  hex,
  initialHeader,
  sealInitial,
  varint,
} from "../helpers/quic.ts";

// RFC 9001 Appendix A and RFC 9369 Appendix A: the same client Initial (DCID 8394c8f03e515708,
// packet number 2, one CRYPTO frame with a ClientHello for "example.com" offering ALPN "alpn",
// PADDING to 1,162 bytes of payload), protected with v1 and with v2 keys.
const DCID = hex("8394c8f03e515708");
const A2_CRYPTO_FRAME = hex(`
  060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
  04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
  616d706c652e636f6dff01000100000a00080006001d00170018001000070005
  04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
  baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
  0d0010000e0403050306030203080408050806002d00020101001c0002400100
  3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
  75300901100f088394c8f03e51570806048000ffff`);
const A2_PAYLOAD = concat(A2_CRYPTO_FRAME, new Uint8Array(917));

const V1_SAMPLE = {
  secret: "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
  key: "1f369613dd76d5467730efcbe3b1a22d",
  iv: "fa044b2f42a3fd3b46fb255c",
  hp: "9f50449e04a0e810283a1e9933adedd2",
  header: "c300000001088394c8f03e5157080000449e00000002",
  sample: "d1b1c98dd7689fb8ec11d242b123dc9b",
  mask: "437b9aec36",
  packet: hex(`
    c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
    d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
    1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
    8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
    30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
    457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
    4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
    4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
    485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
    059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
    7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
    9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
    be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
    68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
    c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
    f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
    291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
    25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
    14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
    ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
    e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
    c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
    203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
    cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
    fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
    a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
    90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
    162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
    40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
    6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
    8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
    be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
    54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
    760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
    f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
    056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
    7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
    e221af44860018ab0856972e194cd934`),
};

const V2_SAMPLE = {
  secret: "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
  key: "8b1a0bc121284290a29e0971b5cd045d",
  iv: "91f73e2351d8fa91660e909f",
  hp: "45b95e15235d6f45a6b19cbcb0294ba9",
  header: "d36b3343cf088394c8f03e5157080000449e00000002",
  sample: "ffe67b6abcdb4298b485dd04de806071",
  mask: "94a0c95e80",
  packet: hex(`
    d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
    dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04
    9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d
    250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a
    12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500
    cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68
    18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33
    12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3
    d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd
    6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520
    bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045
    636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f
    ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12
    16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5
    4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4
    fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b
    8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7
    14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9
    9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91
    abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd
    80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db
    848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18
    d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15
    c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc
    7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61
    f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710
    10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b
    3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e
    06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce
    8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1
    34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1
    e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd
    5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3
    8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89
    d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53
    6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19
    9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b
    a18b2faa745b6fe189cf772a9f84cbfc`),
};

const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

function read(...datagrams: Uint8Array[]): QuicInitialResult {
  const reader = new QuicInitialReader();
  let result = reader.result;
  for (const datagram of datagrams) result = reader.push(datagram);
  return result;
}

const done = (serverName: string | null, alpn: string[], version = V1): QuicInitialResult => ({ state: "done", serverName, alpn, version });
/** An error with exactly this reason, or one that matches the pattern. */
const error = (reason: string | RegExp): QuicInitialResult => ({
  state: "error",
  reason: typeof reason === "string" ? reason : (expect.stringMatching(reason) as unknown as string),
});

describe.each([
  ["v1 (RFC 9001 Appendix A)", V1, V1_SAMPLE],
  ["v2 (RFC 9369 Appendix A)", V2, V2_SAMPLE],
] as const)("QUIC %s", (_, version, sample) => {
  test("derives the client Initial secret, key, iv and hp from the Destination Connection ID", () => {
    expect(toHex(clientInitialSecret(version, DCID)!)).toBe(sample.secret);
    const keys = clientInitialKeys(version, DCID)!;
    expect([toHex(keys.key), toHex(keys.iv), toHex(keys.hp)]).toEqual([sample.key, sample.iv, sample.hp]);
    // The test encoder derives its keys on its own path (hkdfSync): both match the RFC.
    const own = clientKeys(version, DCID);
    expect([toHex(own.secret), toHex(own.key), toHex(own.iv), toHex(own.hp)]).toEqual([sample.secret, sample.key, sample.iv, sample.hp]);
  });

  test("removes header protection and decrypts the sample client Initial to its exact payload", () => {
    const keys = clientInitialKeys(version, DCID)!;
    const packet = sample.packet;
    expect(packet.length).toBe(1200);
    expect(toHex(packet.subarray(22, 38))).toBe(sample.sample);
    expect(toHex(headerProtectionMask(keys, packet.subarray(22, 38)))).toBe(sample.mask);
    const plain = openPayload(keys, 2, hex(sample.header), packet.subarray(22));
    expect(plain).not.toBeNull();
    expect(toHex(plain!)).toBe(toHex(A2_PAYLOAD));
    expect(plain!.length).toBe(1162);
  });

  test("the test encoder reproduces the sample packet byte for byte", () => {
    const sealed = sealInitial({ version, dcid: DCID, packetNumber: 2, pnLength: 4, payload: A2_PAYLOAD });
    expect(toHex(initialHeader({ version, dcid: DCID, packetNumber: 2, payload: A2_PAYLOAD }, A2_PAYLOAD.length))).toBe(sample.header);
    expect(toHex(sealed)).toBe(toHex(sample.packet));
  });

  test('reads the sample ClientHello: SNI "example.com", ALPN "alpn"', () => {
    const copy = sample.packet.slice();
    expect(isQuicInitial(sample.packet)).toBe(true);
    expect(read(sample.packet)).toEqual(done("example.com", ["alpn"], version));
    expect(sample.packet).toEqual(copy);
  });

  test("a PQ-sized ClientHello over two Initials in two datagrams, in either order", () => {
    const hello = helloHandshake({ serverName: "app.example", alpn: ["h3"], keyShare: 1216 });
    expect(hello.length).toBeGreaterThan(1300);
    const [first, second] = helloDatagrams(hello, 2, { version, dcid: DCID });
    expect(read(first!, second!)).toEqual(done("app.example", ["h3"], version));
    expect(read(second!, first!)).toEqual(done("app.example", ["h3"], version));
    const reader = new QuicInitialReader();
    expect(reader.push(second!)).toEqual({ state: "need-more" });
  });

  test("truncated at every byte, the sample datagram is an error, never a throw", () => {
    for (const minDatagramSize of [undefined, 0]) {
      for (let length = 0; length < sample.packet.length; length++) {
        const result = new QuicInitialReader({ minDatagramSize }).push(sample.packet.subarray(0, length));
        if (result.state !== "error") throw new Error(`truncated to ${length} bytes: ${JSON.stringify(result)}`);
      }
    }
    expect(read(sample.packet.subarray(0, 1199))).toEqual(error(/^datagram of 1199 bytes/));
    expect(new QuicInitialReader({ minDatagramSize: 0 }).push(sample.packet.subarray(0, 1199))).toEqual(error(/1200 bytes in 1199 left/));
    expect(new QuicInitialReader({ minDatagramSize: 0 }).push(sample.packet.subarray(0, 17))).toEqual(error("truncated QUIC long header"));
  });

  test("a bad tag is an error in the first datagram, and skipped after it", () => {
    const bad = sample.packet.slice();
    bad[1199]! ^= 1;
    expect(read(bad)).toEqual(error(/did not decrypt/));
    const hello = helloHandshake({ serverName: "app.example", alpn: ["h3"], keyShare: 1216 });
    const [first, second] = helloDatagrams(hello, 2, { version, dcid: DCID });
    const spoiled = second!.slice();
    spoiled[600]! ^= 0x80;
    const reader = new QuicInitialReader();
    expect(reader.push(first!)).toEqual({ state: "need-more" });
    expect(reader.push(spoiled)).toEqual({ state: "need-more" });
    expect(reader.push(second!)).toEqual(done("app.example", ["h3"], version));
  });
});

describe("QuicInitialReader", () => {
  const hello = helloHandshake({ serverName: "app.example", alpn: ["h3", "h3-29"], keyShare: 1216 });
  const expected = done("app.example", ["h3", "h3-29"]);

  test("reassembles CRYPTO frames out of order inside a packet, across coalesced packets and datagrams", () => {
    const [a, b, c, d] = cryptoFrames(hello, 4);
    // Datagram 1: two coalesced Initials (frames d, b); datagram 2: one Initial (c, then a, ACK, PING).
    const one = sealInitial({ dcid: DCID, packetNumber: 0, payload: d! });
    const two = sealInitial({ dcid: DCID, packetNumber: 1, payload: b!, padTo: 1200 - one.length });
    const three = sealInitial({ dcid: DCID, packetNumber: 2, payload: concat(c!, PING, ackFrame(0), a!), padTo: 1200 });
    expect(one.length + two.length).toBe(1200);
    expect(read(concat(one, two), three)).toEqual(expected);
    expect(read(three, concat(one, two))).toEqual(expected);
  });

  test("skips a coalesced 0-RTT packet, trailing bytes and retransmitted copies", () => {
    const [a, b] = cryptoFrames(hello, 2);
    const zeroRtt = concat(Uint8Array.of(0xd0, 0, 0, 0, 1, 8), DCID, Uint8Array.of(0), varint(40), new Uint8Array(40));
    const first = sealInitial({ dcid: DCID, packetNumber: 0, payload: a!, padTo: 1100 });
    const datagram = concat(first, zeroRtt, new Uint8Array(1200 - first.length - zeroRtt.length));
    const second = sealInitial({ dcid: DCID, packetNumber: 1, payload: b!, padTo: 1200 });
    const retransmit = sealInitial({ dcid: DCID, packetNumber: 2, payload: a!, padTo: 1200 });
    expect(read(datagram, retransmit, datagram, second)).toEqual(expected);
  });

  test("reads an Initial with a token and a Source Connection ID", () => {
    const packet = sealInitial({ dcid: DCID, scid: hex("a1a2a3a4a5"), token: new Uint8Array(300).fill(7), payload: cryptoFrame(0, hello), padTo: 1200 });
    expect(read(packet)).toEqual(expected);
  });

  test("decodes 1- and 2-byte packet numbers against the largest one seen", () => {
    const [a, b] = cryptoFrames(hello, 2);
    const first = sealInitial({ dcid: DCID, packetNumber: 300, pnLength: 2, payload: a!, padTo: 1200 });
    const second = sealInitial({ dcid: DCID, packetNumber: 301, pnLength: 1, payload: b!, padTo: 1200 });
    expect(read(first, second)).toEqual(expected);
  });

  test("keeps its result and never changes its input", () => {
    const datagrams = helloDatagrams(hello, 2, { dcid: DCID });
    const copies = datagrams.map((datagram) => datagram.slice());
    const reader = new QuicInitialReader();
    reader.push(datagrams[0]!);
    const result = reader.push(datagrams[1]!);
    expect(result).toEqual(expected);
    expect(reader.push(new Uint8Array(5))).toBe(result);
    expect(reader.result).toBe(result);
    expect(datagrams).toEqual(copies);
  });

  test.each([
    ["an empty datagram", new Uint8Array(0), /^datagram of 0 bytes/],
    ["a short header packet", concat(Uint8Array.of(0x40), new Uint8Array(1199)), "not a QUIC long header packet"],
    ["QUIC draft-29", setVersion(V1_SAMPLE.packet, 0xff00001d), "unsupported QUIC version 0xff00001d"],
    ["a Version Negotiation packet", setVersion(V1_SAMPLE.packet, 0), "a QUIC Version Negotiation packet"],
    ["a v2 Initial labelled v1 (type bits of a v1 0-RTT)", setVersion(V2_SAMPLE.packet, V1), "not a QUIC Initial (long header packet type 1)"],
    ["a v1 Initial labelled v2 (keys for the wrong version)", setVersion(V1_SAMPLE.packet, V2), "not a QUIC Initial (long header packet type 0)"],
    ["a 21-byte DCID", concat(Uint8Array.of(0xc0, 0, 0, 0, 1, 21), new Uint8Array(1194)), "Destination Connection ID of 21 bytes (at most 20)"],
  ])("refuses %s as the first datagram", (_, datagram, reason) => {
    expect(isQuicInitial(datagram)).toBe(false);
    expect(read(datagram)).toEqual(error(reason));
  });

  test.each([
    [
      "a 4-byte Destination Connection ID",
      { dcid: hex("01020304"), payload: cryptoFrame(0, hello) },
      "Destination Connection ID of 4 bytes, a client's first Initial uses at least 8",
    ],
    ["a STREAM frame", { dcid: DCID, payload: Uint8Array.of(0x08, 0, 1, 0x41) }, "QUIC frame type 0x8 is not allowed in an Initial"],
    ["CONNECTION_CLOSE", { dcid: DCID, payload: Uint8Array.of(0x1c, 0x0a, 0, 0) }, "the client closed the QUIC connection (CONNECTION_CLOSE)"],
    ["a cut-off ACK frame", { dcid: DCID, payload: Uint8Array.of(0x03, 5, 0, 9, 0), padTo: 0 }, "malformed ACK frame in a QUIC Initial"],
    [
      "a CRYPTO frame longer than its packet",
      { dcid: DCID, payload: Uint8Array.of(0x06, 0, 0x44, 0, 1, 2), padTo: 0 },
      "malformed CRYPTO frame in a QUIC Initial",
    ],
    [
      "CRYPTO data past the largest hello",
      { dcid: DCID, payload: cryptoFrame(16_380, new Uint8Array(9)) },
      "QUIC CRYPTO data past byte 16388 (the largest ClientHello)",
    ],
    ["a ServerHello", { dcid: DCID, payload: cryptoFrame(0, Uint8Array.of(2, 0, 0, 50)) }, "not a ClientHello (handshake type 2)"],
    ["a hello over 16 KiB", { dcid: DCID, payload: cryptoFrame(0, Uint8Array.of(1, 0, 0x40, 1)) }, "ClientHello too long (16385 bytes, at most 16384)"],
    ["reserved header bits", { dcid: DCID, payload: cryptoFrame(0, hello.subarray(0, 600)), reserved: 2 }, "QUIC Initial with reserved header bits set"],
    ["no frames", { dcid: DCID, payload: new Uint8Array(0), padTo: 0 }, "QUIC Initial with no frames"],
  ])("refuses an Initial that decrypts but carries %s", (_, options, reason) => {
    const packet = sealInitial({ padTo: 1200, ...options });
    expect(new QuicInitialReader({ minDatagramSize: 0 }).push(packet)).toEqual(error(reason));
  });

  test("a hello whose SNI the TLS reader refuses gives that reader's reason", () => {
    const bad = helloHandshake({ serverName: "bad name", alpn: ["h3"] });
    expect(read(sealInitial({ dcid: DCID, payload: cryptoFrame(0, bad), padTo: 1200 }))).toEqual(error("server name is not a host name (byte 0x20)"));
  });

  test("CRYPTO data that changes at an offset already received is an error", () => {
    const changed = hello.slice(0, 600);
    changed[599]! ^= 1;
    const first = sealInitial({ dcid: DCID, packetNumber: 0, payload: cryptoFrame(0, hello.subarray(0, 600)), padTo: 1200 });
    const second = sealInitial({ dcid: DCID, packetNumber: 1, payload: cryptoFrame(0, changed), padTo: 1200 });
    expect(read(first, second)).toEqual(error("QUIC CRYPTO data at offset 599 differs from an earlier copy"));
  });

  test("after the first Initial, other connections, versions, short datagrams and stray packets are skipped", () => {
    const [a, b] = cryptoFrames(hello, 2);
    const first = sealInitial({ dcid: DCID, packetNumber: 0, payload: a!, padTo: 1200 });
    const second = sealInitial({ dcid: DCID, packetNumber: 1, payload: b!, padTo: 1200 });
    const reader = new QuicInitialReader();
    expect(reader.push(first)).toEqual({ state: "need-more" });
    for (const stray of [
      sealInitial({ dcid: hex("0102030405060708"), payload: b!, padTo: 1200 }),
      sealInitial({ version: V2, dcid: DCID, payload: b!, padTo: 1200 }),
      second.subarray(0, 1000),
      concat(Uint8Array.of(0x41), new Uint8Array(1199)),
      new Uint8Array(1300),
    ]) {
      expect(reader.push(stray)).toEqual({ state: "need-more" });
    }
    expect(reader.push(second)).toEqual(expected);
  });

  test(`gives up after ${MAX_INITIAL_PACKETS} packets without a whole hello`, () => {
    const first = sealInitial({ dcid: DCID, payload: cryptoFrame(0, hello.subarray(0, 100)), padTo: 1200 });
    const reader = new QuicInitialReader();
    let result = reader.push(first);
    for (let i = 1; i < MAX_INITIAL_PACKETS; i++) result = reader.push(first);
    expect(result).toEqual({ state: "need-more" });
    expect(reader.push(first)).toEqual(error(`no whole ClientHello in ${MAX_INITIAL_PACKETS} packets`));
  });

  test("isQuicInitial looks at the long header only", () => {
    expect(isQuicInitial(V1_SAMPLE.packet)).toBe(true);
    expect(isQuicInitial(V2_SAMPLE.packet)).toBe(true);
    expect(isQuicInitial(V1_SAMPLE.packet.subarray(0, 20))).toBe(true);
    expect(isQuicInitial(V1_SAMPLE.packet.subarray(0, 10))).toBe(false);
    expect(isQuicInitial(Uint8Array.of(0x16, 3, 1, 0, 5))).toBe(false);
  });
});

function setVersion(packet: Uint8Array, version: number): Uint8Array {
  const copy = packet.slice();
  copy.set([version >>> 24, (version >> 16) & 0xff, (version >> 8) & 0xff, version & 0xff], 1);
  return copy;
}

// Regression: the header protection was removed in `d.slice(...)`, a view on a Node Buffer, so
// the caller's datagram was changed and went to the target unprotected. The reader copies now.
test("reading an Initial given as a Buffer leaves the datagram's bytes as they were", () => {
  const datagram = Buffer.from(V1_SAMPLE.packet);
  const before = Buffer.from(datagram);
  const result = new QuicInitialReader().push(datagram);
  expect(result.state).toBe("done");
  expect(datagram.equals(before)).toBe(true);
});
