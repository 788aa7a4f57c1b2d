/**
 * QUIC preface: the server name and ALPN protocols of an HTTP/3 (or any QUIC) client, read from
 * its Initial packets without terminating QUIC, so a UDP listener can route a flow by SNI.
 *
 * `QuicInitialReader` is pushed the client's datagrams one at a time, in arrival order. It reads
 * QUIC v1 (RFC 9000, RFC 9001) and v2 (RFC 9369) client Initials: derives the Initial keys from
 * the first Initial's Destination Connection ID, removes header protection, decrypts, reads the
 * frames an Initial may carry (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE) and reassembles the
 * CRYPTO stream by offset, across coalesced packets, packets and datagrams in any order. The
 * ClientHello it holds is read by `ClientHelloReader` (sni.ts), so TCP and QUIC routes see the
 * same names, the same limits and the same error reasons. Inputs are never changed: the caller
 * forwards the datagrams as they came once a route is picked.
 *
 * What is an error and what is ignored: the first packet of the first datagram must be a
 * well-formed Initial of a supported version that decrypts, in a datagram of at least 1,200
 * bytes (RFC 9000 §14.1), or the result is "error". After that, packets a server would discard
 * (another version or connection ID, a failed decryption, 0-RTT or Handshake packets, short
 * datagrams, trailing bytes) are skipped, so a spoofed datagram cannot spoil a real client's
 * hello. Anything wrong inside a packet that decrypted (a bad frame, CRYPTO data that changes,
 * a bad hello) is an error. Bounds: CRYPTO data is kept only up to the end of the largest
 * ClientHello (`MAX_CRYPTO_BYTES`, 16,388 bytes, plus a byte map of the same size), and after
 * `MAX_INITIAL_PACKETS` packets without a whole hello the result is an error. Never throws.
 * Not read: QUIC drafts and other versions, Retry and Version Negotiation (the listener does
 * not answer before it routes), and Initials whose keys come from a server's Retry.
 */
import { type InitialKeys, QUIC_V1, QUIC_V2, clientInitialKeys, headerProtectionMask, initialPacketType, openPayload } from "./quic-crypto.ts";
import { ClientHelloReader, MAX_CLIENT_HELLO_LENGTH } from "./sni.ts";

export { QUIC_V1, QUIC_V2 };

export type QuicInitialResult =
  | { state: "need-more" }
  | { state: "error"; reason: string }
  | { state: "done"; serverName: string | null; alpn: string[]; version: number };

export interface QuicInitialOptions {
  /**
   * Datagrams shorter than this carry no Initial a server would accept (RFC 9000 §14.1).
   * Default `MIN_INITIAL_DATAGRAM` (1,200); 0 = any size.
   */
  minDatagramSize?: number;
}

export const MIN_INITIAL_DATAGRAM = 1200;
/** Packets (skipped ones included) read before giving up; a 16 KiB hello takes about 15. */
export const MAX_INITIAL_PACKETS = 32;
/** The CRYPTO stream kept: the handshake header and the largest ClientHello body accepted. */
export const MAX_CRYPTO_BYTES = 4 + MAX_CLIENT_HELLO_LENGTH;

/** RFC 9000 §17.2: a v1 (and v2) connection ID has at most 20 bytes. */
const MAX_CID_LENGTH = 20;
/** RFC 9000 §7.2: a client's first Destination Connection ID has at least 8 bytes. */
const MIN_CLIENT_DCID_LENGTH = 8;
/** Packet number (at most 4 bytes) plus the 16-byte header protection sample. */
const MIN_PROTECTED_LENGTH = 4 + 16;
const FRAME_PADDING = 0x00;
const FRAME_PING = 0x01;
const FRAME_ACK = 0x02;
const FRAME_ACK_ECN = 0x03;
const FRAME_CRYPTO = 0x06;
const FRAME_CONNECTION_CLOSE = 0x1c;

const NEED_MORE: QuicInitialResult = Object.freeze({ state: "need-more" });

/**
 * True when the datagram starts with a QUIC v1 or v2 Initial long header: a cheap test of the
 * unprotected bits (header form, version, packet type, connection ID lengths), no decryption.
 */
export function isQuicInitial(datagram: Uint8Array): boolean {
  const header = readInvariantHeader(datagram, 0);
  return typeof header !== "string" && initialPacketType(header.version) === ((datagram[0]! >> 4) & 3) && header.dcid.length >= MIN_CLIENT_DCID_LENGTH;
}

/**
 * Reads the ClientHello from a client's first datagrams. `push` each datagram until the result
 * is not "need-more"; after that `push` returns the same result and ignores its input.
 */
export class QuicInitialReader {
  #result: QuicInitialResult = NEED_MORE;
  readonly #minDatagramSize: number;
  /** Set by the first Initial that decrypts. */
  #version = 0;
  #dcid: Uint8Array | null = null;
  #keys: InitialKeys | null = null;
  #largestPacketNumber = -1;
  #packets = 0;
  /** The CRYPTO stream from offset 0, which of its bytes arrived, and how many in a row did. */
  #crypto = new Uint8Array(0);
  #have = new Uint8Array(0);
  #contiguous = 0;
  /** The end of the hello in the CRYPTO stream, once its handshake header arrived. */
  #helloEnd: number | null = null;
  #hello = new ClientHelloReader();

  constructor(options: QuicInitialOptions = {}) {
    this.#minDatagramSize = options.minDatagramSize ?? MIN_INITIAL_DATAGRAM;
  }

  get result(): QuicInitialResult {
    return this.#result;
  }

  push(datagram: Uint8Array): QuicInitialResult {
    if (this.#result.state !== "need-more") return this.#result;
    try {
      this.#datagram(datagram);
    } catch (error) {
      // Not expected (the fuzz test looks for it); a safety net so a listener never sees a throw.
      this.#fail(`internal error reading a QUIC Initial: ${error instanceof Error ? error.message : String(error)}`);
    }
    return this.#result;
  }

  #datagram(d: Uint8Array): void {
    const strict = this.#keys === null;
    if (d.length < this.#minDatagramSize || d.length === 0) {
      if (strict) return this.#fail(`datagram of ${d.length} bytes, too short for a client Initial (at least ${Math.max(1, this.#minDatagramSize)})`);
      if (++this.#packets > MAX_INITIAL_PACKETS) this.#fail(`no whole ClientHello in ${MAX_INITIAL_PACKETS} packets`);
      return;
    }
    for (let at = 0, first = true; at < d.length && this.#result.state === "need-more"; first = false) {
      if (++this.#packets > MAX_INITIAL_PACKETS) return this.#fail(`no whole ClientHello in ${MAX_INITIAL_PACKETS} packets`);
      const next = this.#packet(d, at, strict && first);
      if (typeof next === "string") {
        // RFC 9000 §12.2: a packet that cannot be read is dropped, and with it the rest of
        // the datagram; only the first packet of the first datagram has to be an Initial.
        if (strict && first) this.#fail(next);
        return;
      }
      at = next;
    }
  }

  /** One packet at `d[start]`: where the next one starts, or why this one is dropped. */
  #packet(d: Uint8Array, start: number, mustBeInitial: boolean): number | string {
    const header = readInvariantHeader(d, start);
    if (typeof header === "string") return header;
    const { version, dcid } = header;
    const initialType = initialPacketType(version);
    if (initialType === undefined) return `unsupported QUIC version 0x${hex32(version)}`;
    if (this.#keys !== null && version !== this.#version) return `QUIC version 0x${hex32(version)} after 0x${hex32(this.#version)}`;
    const type = (d[start]! >> 4) & 3;
    let p = header.end;
    if (type === initialType) {
      const token = readVarint(d, p);
      if (token === null || token.next + token.value > d.length) return "truncated Initial token";
      p = token.next + token.value;
    } else if (mustBeInitial) {
      return `not a QUIC Initial (long header packet type ${type})`;
    } else if (type === (initialType + 3) % 4) {
      return "a Retry packet"; // no Length field: it ends the datagram
    }
    const length = readVarint(d, p);
    if (length === null) return "truncated QUIC long header";
    const pnOffset = length.next;
    const end = pnOffset + length.value;
    if (end > d.length) return `QUIC packet of ${end - start} bytes in ${d.length - start} left in its datagram`;
    if (type !== initialType) return end; // 0-RTT or Handshake: skipped by its length
    if (length.value < MIN_PROTECTED_LENGTH) return `QUIC packet payload of ${length.value} bytes, too short to remove header protection`;
    if (this.#dcid === null) {
      if (dcid.length < MIN_CLIENT_DCID_LENGTH)
        return `Destination Connection ID of ${dcid.length} bytes, a client's first Initial uses at least ${MIN_CLIENT_DCID_LENGTH}`;
    } else if (!sameBytes(dcid, this.#dcid)) {
      return "Initial for another Destination Connection ID";
    }
    const keys = this.#keys ?? clientInitialKeys(version, dcid);
    if (keys === null) return `unsupported QUIC version 0x${hex32(version)}`;

    // RFC 9001 §5.4: unmask the low bits of the first byte and the packet number, in a copy.
    const mask = headerProtectionMask(keys, d.subarray(pnOffset + 4, pnOffset + 20));
    const first = d[start]! ^ (mask[0]! & 0x0f);
    const pnLength = (first & 3) + 1;
    // A copy: on a Node Buffer `slice` is a view, and the datagram is forwarded unchanged.
    const unprotected = Uint8Array.prototype.slice.call(d, start, pnOffset + pnLength);
    unprotected[0] = first;
    let truncated = 0;
    for (let i = 0; i < pnLength; i++) {
      const at = pnOffset - start + i;
      unprotected[at] = unprotected[at]! ^ mask[1 + i]!;
      truncated = truncated * 256 + unprotected[at]!;
    }
    const packetNumber = decodePacketNumber(this.#largestPacketNumber, truncated, pnLength * 8);
    const plain = openPayload(keys, packetNumber, unprotected, d.subarray(pnOffset + pnLength, end));
    if (plain === null) return "QUIC Initial did not decrypt (bad tag, or not from this connection)";

    // Authenticated: from here on, what is wrong is the client's doing, and final.
    if (this.#keys === null) {
      this.#version = version;
      this.#dcid = dcid.slice();
      this.#keys = keys;
    }
    this.#largestPacketNumber = Math.max(this.#largestPacketNumber, packetNumber);
    if ((first & 0x0c) !== 0) this.#fail("QUIC Initial with reserved header bits set");
    else this.#frames(plain);
    return end;
  }

  /** RFC 9000 §19 and §12.4 (Table 3): the frames of one decrypted Initial. */
  #frames(b: Uint8Array): void {
    if (b.length === 0) return this.#fail("QUIC Initial with no frames");
    let p = 0;
    while (p < b.length && this.#result.state === "need-more") {
      const type = readVarint(b, p);
      if (type === null) return this.#fail("truncated QUIC frame type");
      p = type.next;
      if (type.value === FRAME_PADDING || type.value === FRAME_PING) continue;
      if (type.value === FRAME_ACK || type.value === FRAME_ACK_ECN) {
        const next = skipAck(b, p, type.value === FRAME_ACK_ECN);
        if (next === null) return this.#fail("malformed ACK frame in a QUIC Initial");
        p = next;
      } else if (type.value === FRAME_CRYPTO) {
        const offset = readVarint(b, p);
        const length = offset === null ? null : readVarint(b, offset.next);
        if (offset === null || length === null || length.next + length.value > b.length) return this.#fail("malformed CRYPTO frame in a QUIC Initial");
        p = length.next + length.value;
        this.#cryptoData(offset.value, b.subarray(length.next, p));
      } else if (type.value === FRAME_CONNECTION_CLOSE) {
        return this.#fail("the client closed the QUIC connection (CONNECTION_CLOSE)");
      } else {
        return this.#fail(`QUIC frame type 0x${type.value.toString(16)} is not allowed in an Initial`);
      }
    }
    if (this.#result.state === "need-more") this.#advance();
  }

  /** CRYPTO bytes at `offset` of the stream: kept once; a later copy must match (RFC 9000 §19.6). */
  #cryptoData(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const end = offset + data.length;
    if (end > MAX_CRYPTO_BYTES) return this.#fail(`QUIC CRYPTO data past byte ${MAX_CRYPTO_BYTES} (the largest ClientHello)`);
    if (end > this.#crypto.length) {
      const size = Math.min(MAX_CRYPTO_BYTES, Math.max(end, 2 * this.#crypto.length, 2048));
      const crypto = new Uint8Array(size);
      const have = new Uint8Array(size);
      crypto.set(this.#crypto);
      have.set(this.#have);
      this.#crypto = crypto;
      this.#have = have;
    }
    const crypto = this.#crypto;
    const have = this.#have;
    for (let i = offset; i < end; i++) {
      const byte = data[i - offset]!;
      if (have[i] === 0) {
        crypto[i] = byte;
        have[i] = 1;
      } else if (crypto[i] !== byte) {
        return this.#fail(`QUIC CRYPTO data at offset ${i} differs from an earlier copy`);
      }
    }
  }

  /** Hands the in-order CRYPTO bytes to the ClientHello reader: the header first, then the body. */
  #advance(): void {
    while (this.#contiguous < this.#have.length && this.#have[this.#contiguous] === 1) this.#contiguous++;
    if (this.#helloEnd === null && this.#contiguous >= 4) {
      const header = this.#crypto.subarray(0, 4);
      const result = this.#hello.push(tlsRecord(header));
      if (result.state === "error") return this.#fail(result.reason);
      this.#helloEnd = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
    }
    if (this.#helloEnd === null || this.#contiguous < this.#helloEnd) return;
    // The body is at most MAX_CLIENT_HELLO_LENGTH (the header said so): one record holds it.
    const result = this.#hello.push(tlsRecord(this.#crypto.subarray(4, this.#helloEnd)));
    if (result.state === "done") this.#result = { state: "done", serverName: result.serverName, alpn: result.alpn, version: this.#version };
    else if (result.state === "error") this.#fail(result.reason);
    else this.#fail("ClientHello did not end where its length said");
  }

  #fail(reason: string): void {
    this.#result = { state: "error", reason };
  }
}

interface InvariantHeader {
  version: number;
  dcid: Uint8Array;
  /** Where the version-specific part starts (after the Source Connection ID). */
  end: number;
}

/** RFC 8999 §5.1: a long header's version and connection IDs, or why there is none. */
function readInvariantHeader(d: Uint8Array, start: number): InvariantHeader | string {
  if (start >= d.length) return "empty datagram";
  if ((d[start]! & 0x80) === 0) return "not a QUIC long header packet";
  if (d.length - start < 7) return "truncated QUIC long header";
  const version = ((d[start + 1]! << 24) | (d[start + 2]! << 16) | (d[start + 3]! << 8) | d[start + 4]!) >>> 0;
  if (version === 0) return "a QUIC Version Negotiation packet";
  let p = start + 5;
  const dcidLength = d[p++]!;
  if (dcidLength > MAX_CID_LENGTH) return `Destination Connection ID of ${dcidLength} bytes (at most ${MAX_CID_LENGTH})`;
  if (p + dcidLength + 1 > d.length) return "truncated QUIC long header";
  const dcid = d.subarray(p, p + dcidLength);
  p += dcidLength;
  const scidLength = d[p++]!;
  if (scidLength > MAX_CID_LENGTH) return `Source Connection ID of ${scidLength} bytes (at most ${MAX_CID_LENGTH})`;
  if (p + scidLength > d.length) return "truncated QUIC long header";
  return { version, dcid, end: p + scidLength };
}

/** RFC 9000 §16: a variable-length integer at `d[at]`, or null when it runs past the end. */
function readVarint(d: Uint8Array, at: number): { value: number; next: number } | null {
  if (at >= d.length) return null;
  const size = 1 << (d[at]! >> 6);
  if (at + size > d.length) return null;
  let value = d[at]! & 0x3f;
  for (let i = 1; i < size; i++) value = value * 256 + d[at + i]!;
  return { value, next: at + size };
}

/** RFC 9000 §19.3: the end of an ACK frame whose type ends at `p`, or null when it is cut off. */
function skipAck(b: Uint8Array, p: number, ecn: boolean): number | null {
  let at = p;
  let ranges = 0;
  // Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range.
  for (let i = 0; i < 4; i++) {
    const field = readVarint(b, at);
    if (field === null) return null;
    if (i === 2) ranges = field.value;
    at = field.next;
  }
  // Gap and length per range, then 3 ECN counts. A huge count runs out of bytes first.
  for (let i = 0, fields = 2 * ranges + (ecn ? 3 : 0); i < fields; i++) {
    const field = readVarint(b, at);
    if (field === null) return null;
    at = field.next;
  }
  return at;
}

/** RFC 9000 §A.3: the full packet number closest to the next one expected. */
function decodePacketNumber(largest: number, truncated: number, bits: number): number {
  const expected = largest + 1;
  const window = 2 ** bits;
  const half = window / 2;
  const candidate = Math.floor(expected / window) * window + truncated;
  if (candidate <= expected - half && candidate < 2 ** 62 - window) return candidate + window;
  if (candidate > expected + half && candidate >= window) return candidate - window;
  return candidate;
}

/** Handshake bytes as one TLS handshake record, the way ClientHelloReader reads them. */
function tlsRecord(fragment: Uint8Array): Uint8Array {
  const record = new Uint8Array(5 + fragment.length);
  record.set([22, 3, 1, fragment.length >> 8, fragment.length & 0xff]);
  record.set(fragment, 5);
  return record;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}
