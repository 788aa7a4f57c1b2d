/**
 * ClientHello bytes for the SNI tests: the captured fixtures (test/fixtures/tls, regenerate
 * with `bun test/fixtures/tls/capture.ts`), a builder for synthetic hellos of any size, and a
 * re-framer that spreads a hello over records of a given size.
 */
import { readFileSync } from "node:fs";

const FIXTURES = `${import.meta.dir}/../fixtures/tls`;

export interface HelloFixture {
  file: string;
  client: string;
  serverName: string | null;
  alpn: string[];
  bytes: Uint8Array;
}

export function helloFixtures(): HelloFixture[] {
  const index = JSON.parse(readFileSync(`${FIXTURES}/index.json`, "utf8")) as Omit<HelloFixture, "bytes">[];
  // A plain Uint8Array: Buffer's slice() is a view, and tests copy with slice().
  return index.map((entry) => ({ ...entry, bytes: new Uint8Array(Buffer.from(readFileSync(`${FIXTURES}/${entry.file}`, "utf8").trim(), "hex")) }));
}

export interface HelloOptions {
  serverName?: string | null;
  alpn?: string[];
  /** Bytes of one key share (group X25519MLKEM768 = 0x11ec); 1216 is the real size. */
  keyShare?: number;
  /** Pads the hello body (padding extension) to exactly this many bytes. */
  bodyLength?: number;
  /** The largest record fragment; 16384 is the TLS maximum. */
  recordSize?: number;
}

/** A TLS 1.3-shaped ClientHello, framed into records. */
export function buildClientHello(options: HelloOptions = {}): Uint8Array {
  const { serverName = "db.example.com", alpn = [], keyShare = 32, bodyLength, recordSize = 16_384 } = options;
  const extensions: number[][] = [];
  if (serverName !== null) {
    const name = ascii(serverName);
    extensions.push(extension(0, [...u16(name.length + 3), 0, ...u16(name.length), ...name]));
  }
  if (alpn.length > 0) {
    const list = alpn.flatMap((protocol) => [protocol.length, ...ascii(protocol)]);
    extensions.push(extension(16, [...u16(list.length), ...list]));
  }
  extensions.push(extension(43, [2, 0x03, 0x04])); // supported_versions: TLS 1.3
  extensions.push(extension(10, [0, 2, 0x11, 0xec])); // supported_groups
  const share = Array.from({ length: keyShare }, (_, i) => (i * 7) & 0xff);
  extensions.push(extension(51, [...u16(share.length + 4), 0x11, 0xec, ...u16(share.length), ...share]));
  const fixed = [0x03, 0x03, ...new Array(32).fill(0x42), 32, ...new Array(32).fill(0x17), 0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0];
  let extensionBytes = extensions.flat();
  if (bodyLength !== undefined) {
    const padding = bodyLength - fixed.length - 2 - extensionBytes.length - 4;
    if (padding < 0) throw new Error(`bodyLength ${bodyLength} is too small for these extensions`);
    extensionBytes = [...extensionBytes, ...extension(21, new Array(padding).fill(0))];
  }
  const body = [...fixed, ...u16(extensionBytes.length), ...extensionBytes];
  const handshake = Uint8Array.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff, ...body]);
  return frame(handshake, recordSize);
}

/** Handshake bytes framed into handshake records of at most `recordSize` bytes each. */
export function frame(handshake: Uint8Array, recordSize: number): Uint8Array {
  const out = new Uint8Array(handshake.length + 5 * Math.ceil(handshake.length / recordSize));
  let to = 0;
  for (let at = 0; at < handshake.length; at += recordSize) {
    const fragment = handshake.subarray(at, at + recordSize);
    out.set([22, 3, 1, ...u16(fragment.length)], to);
    out.set(fragment, to + 5);
    to += 5 + fragment.length;
  }
  return out;
}

/** The handshake bytes of a record stream (every record's fragment, in order; a cut-off last one in part). */
export function unframe(records: Uint8Array): Uint8Array {
  const out = new Uint8Array(records.length);
  let to = 0;
  for (let at = 0; at + 5 <= records.length; ) {
    const length = (records[at + 3]! << 8) | records[at + 4]!;
    const fragment = records.subarray(at + 5, at + 5 + length);
    out.set(fragment, to);
    to += fragment.length;
    at += 5 + length;
  }
  return out.slice(0, to);
}

/** The same hello carried in records of `recordSize` bytes. */
export function reframe(records: Uint8Array, recordSize: number): Uint8Array {
  return frame(unframe(records), recordSize);
}

/** `bytes` cut into pieces of `size` (the last may be shorter). */
export function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

function extension(type: number, data: number[]): number[] {
  return [...u16(type), ...u16(data.length), ...data];
}

function u16(value: number): number[] {
  return [(value >> 8) & 0xff, value & 0xff];
}

function ascii(text: string): number[] {
  return [...text].map((char) => char.charCodeAt(0));
}
