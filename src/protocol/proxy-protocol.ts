/**
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 and 2: a header the
 * dialling side sends first so the upstream learns the client's real address.
 *
 * Sending: `encodeProxyV1` / `encodeProxyV2` never throw. Addresses that are not IP literals
 * (a unix socket's, or none) give `PROXY UNKNOWN\r\n` / a v2 LOCAL header, which tell the
 * receiver to use the connection's own addresses (HAProxy sends the same).
 *
 * Receiving: `ProxyHeaderReader` is fed the bytes as they arrive (any split, down to 1 byte),
 * tells v1 from v2 by the first byte, and fails as soon as a byte cannot belong to a header,
 * so a client that is not a proxy is closed without waiting for more. It copies what it needs
 * and never changes the input; bytes after `headerLength` belong to the proxied stream.
 */
import { formatIp, parseIp, unmapIPv4 } from "../util/cidr.ts";

export interface ProxyEndpoint {
  host: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** "local": v2 LOCAL, a connection the proxy made itself (health checks). */
  command: "proxy" | "local";
  /** "unknown": v1 UNKNOWN, v2 LOCAL, and v2 families other than TCP (UNSPEC, UDP, unix). */
  family: "tcp4" | "tcp6" | "unknown";
  /** null when the family is "unknown": use the connection's own addresses. */
  source: ProxyEndpoint | null;
  destination: ProxyEndpoint | null;
  /** Bytes of the stream taken by the header; the proxied stream starts after them. */
  headerLength: number;
  /** v2: the TLVs after the addresses (see `decodeTlvs`); absent for v1 and when there are none. */
  tlvs?: ReturnType<typeof decodeTlvs>;
}

export type ProxyHeaderResult = { state: "need-more" } | ({ state: "done" } & ProxyHeader) | { state: "error"; reason: string };

/** The longest v1 line, CRLF included (the spec's worst case, `PROXY UNKNOWN` with two IPv6). */
export const MAX_PROXY_V1_LENGTH = 107;
/**
 * The largest v2 address block + TLVs accepted (the spec allows 65,535). HAProxy's own
 * headers with every TLV stay well under 1 KiB; the cap bounds what one connection buffers.
 */
export const MAX_PROXY_V2_LENGTH = 4096;

const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);
const V1_PREFIX = "PROXY ";
const NEED_MORE: ProxyHeaderResult = Object.freeze({ state: "need-more" });
const NOT_PROXY = "not a PROXY protocol header";

// ── Sending ────────────────────────────────────────────────────────────────────────────────

/** `PROXY TCP4|TCP6 src dst sport dport\r\n`, or `PROXY UNKNOWN\r\n`. */
export function encodeProxyV1(source: ProxyEndpoint | null, destination: ProxyEndpoint | null): Uint8Array {
  const pair = ipPair(source, destination);
  if (pair === null) return new TextEncoder().encode("PROXY UNKNOWN\r\n");
  const [from, to] = pair;
  const family = from.length === 4 ? "TCP4" : "TCP6";
  return new TextEncoder().encode(`PROXY ${family} ${v1Ip(from)} ${v1Ip(to)} ${source!.port} ${destination!.port}\r\n`);
}

/**
 * What a TLS-terminating proxy says of the client's TLS in a v2 header (the spec's section
 * 2.2.5, PP2_TYPE_SSL): `version` and `cipher` as OpenSSL names them (`TLSv1.3`,
 * `TLS_AES_256_GCM_SHA384`), the client certificate's subject CN (null: none), whether the
 * client sent a certificate, and whether it verified.
 */
export interface ProxySsl {
  version: string;
  cipher: string;
  cn: string | null;
  certificate: boolean;
  verified: boolean;
}

export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
export const PP2_SUBTYPE_SSL_CN = 0x22;
export const PP2_SUBTYPE_SSL_CIPHER = 0x23;
export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;

/**
 * A v2 PROXY header for TCP over IPv4/IPv6, or LOCAL with no addresses. With `ssl`, a PROXY
 * (not LOCAL) header carries one PP2_TYPE_SSL TLV: client flags, the verify result (0 =
 * verified, or no certificate), and the SSL_VERSION, SSL_CN (when a certificate was sent) and
 * SSL_CIPHER sub-TLVs, as HAProxy's `send-proxy-v2-ssl-cn` writes them. `transport = "dgram"`
 * marks UDP (0x12 / 0x22): a UDP listener puts the header in front of every datagram.
 */
export function encodeProxyV2(
  source: ProxyEndpoint | null,
  destination: ProxyEndpoint | null,
  ssl?: ProxySsl,
  transport: "stream" | "dgram" = "stream",
): Uint8Array {
  const pair = ipPair(source, destination);
  if (pair === null) {
    const local = new Uint8Array(16);
    local.set(V2_SIGNATURE);
    local[12] = 0x20; // version 2, LOCAL; family and length 0
    return local;
  }
  const [from, to] = pair;
  const size = from.length;
  const tlv = ssl === undefined ? null : sslTlv(ssl);
  const out = new Uint8Array(16 + size * 2 + 4 + (tlv?.length ?? 0));
  const view = new DataView(out.buffer);
  out.set(V2_SIGNATURE);
  out[12] = 0x21; // version 2, PROXY
  out[13] = (size === 4 ? 0x10 : 0x20) | (transport === "dgram" ? 0x02 : 0x01); // INET / INET6, STREAM / DGRAM
  view.setUint16(14, out.length - 16);
  out.set(from, 16);
  out.set(to, 16 + size);
  view.setUint16(16 + size * 2, source!.port);
  view.setUint16(18 + size * 2, destination!.port);
  if (tlv !== null) out.set(tlv, 20 + size * 2);
  return out;
}

/** PP2_TYPE_SSL: type, length, client (1 byte), verify (4 bytes), then the sub-TLVs. */
function sslTlv(ssl: ProxySsl): Uint8Array {
  const encoder = new TextEncoder();
  const subs: [number, Uint8Array][] = [[PP2_SUBTYPE_SSL_VERSION, encoder.encode(ssl.version)]];
  if (ssl.certificate && ssl.cn !== null) subs.push([PP2_SUBTYPE_SSL_CN, encoder.encode(ssl.cn)]);
  subs.push([PP2_SUBTYPE_SSL_CIPHER, encoder.encode(ssl.cipher)]);
  const value = 5 + subs.reduce((sum, [, bytes]) => sum + 3 + bytes.length, 0);
  const out = new Uint8Array(3 + value);
  const view = new DataView(out.buffer);
  out[0] = PP2_TYPE_SSL;
  view.setUint16(1, value);
  out[3] = PP2_CLIENT_SSL | (ssl.certificate ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
  view.setUint32(4, ssl.certificate && !ssl.verified ? 1 : 0);
  let at = 8;
  for (const [type, bytes] of subs) {
    out[at] = type;
    view.setUint16(at + 1, bytes.length);
    out.set(bytes, at + 3);
    at += 3 + bytes.length;
  }
  return out;
}

/**
 * Both addresses as bytes of one family: 4 each when both are IPv4 (or IPv4-mapped), else 16
 * each (IPv4 mapped into IPv6). null when either is missing or not an IP with a valid port.
 */
function ipPair(source: ProxyEndpoint | null, destination: ProxyEndpoint | null): [Uint8Array, Uint8Array] | null {
  const from = endpointBytes(source);
  const to = endpointBytes(destination);
  if (from === null || to === null) return null;
  if (from.length === to.length) return [from, to];
  return [toIPv6(from), toIPv6(to)];
}

function endpointBytes(endpoint: ProxyEndpoint | null): Uint8Array | null {
  if (endpoint === null || !Number.isInteger(endpoint.port) || endpoint.port < 0 || endpoint.port > 65535) return null;
  const percent = endpoint.host.indexOf("%"); // a zone id (fe80::1%eth0) cannot be sent
  const bytes = parseIp(percent < 0 ? endpoint.host : endpoint.host.slice(0, percent));
  return bytes === null ? null : unmapIPv4(bytes);
}

function toIPv6(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const out = new Uint8Array(16);
  out[10] = out[11] = 0xff;
  out.set(bytes, 12);
  return out;
}

/** v1 wants IPv6 as hex groups only: an IPv4-mapped address is written `::ffff:7f00:1`. */
function v1Ip(bytes: Uint8Array): string {
  const text = formatIp(bytes);
  if (bytes.length === 4 || !text.includes(".")) return text;
  return `::ffff:${((bytes[12]! << 8) | bytes[13]!).toString(16)}:${((bytes[14]! << 8) | bytes[15]!).toString(16)}`;
}

// ── Receiving ──────────────────────────────────────────────────────────────────────────────

/**
 * The TLVs after a v2 header's addresses: their types in order, and PP2_TYPE_SSL decoded. Malformed TLVs end the list (a receiver may ignore them).
 */
export function decodeTlvs(header: Uint8Array): { types: number[]; ssl: (ProxySsl & { client: number; verify: number }) | null } {
  const family = header[13]! >> 4;
  let at = 16 + ((header[12]! & 0xf) === 1 ? (ADDRESS_LENGTH[family] ?? 0) : 0);
  const types: number[] = [];
  let ssl: (ProxySsl & { client: number; verify: number }) | null = null;
  const decoder = new TextDecoder();
  while (at + 3 <= header.length) {
    const type = header[at]!;
    const length = (header[at + 1]! << 8) | header[at + 2]!;
    if (at + 3 + length > header.length) break;
    types.push(type);
    const value = header.subarray(at + 3, at + 3 + length);
    if (type === PP2_TYPE_SSL && ssl === null && length >= 5) {
      const client = value[0]!;
      const verify = new DataView(value.buffer, value.byteOffset + 1, 4).getUint32(0);
      ssl = { client, verify, version: "", cipher: "", cn: null, certificate: (client & PP2_CLIENT_CERT_CONN) !== 0, verified: verify === 0 };
      let sub = 5;
      while (sub + 3 <= value.length) {
        const subType = value[sub]!;
        const subLength = (value[sub + 1]! << 8) | value[sub + 2]!;
        if (sub + 3 + subLength > value.length) break;
        const text = decoder.decode(value.subarray(sub + 3, sub + 3 + subLength));
        if (subType === PP2_SUBTYPE_SSL_VERSION) ssl.version = text;
        else if (subType === PP2_SUBTYPE_SSL_CN) ssl.cn = text;
        else if (subType === PP2_SUBTYPE_SSL_CIPHER) ssl.cipher = text;
        sub += 3 + subLength;
      }
    }
    at += 3 + length;
  }
  return { types, ssl };
}

/**
 * Reads one PROXY header, v1 or v2, from the start of a stream. `push` each chunk as it
 * arrives until the result is not "need-more"; after that `push` returns the same result.
 * Never throws.
 */
export class ProxyHeaderReader {
  #result: ProxyHeaderResult = NEED_MORE;
  #version: 0 | 1 | 2 = 0;
  /** The header bytes read so far (v2: grown to the full header once its length is known). */
  #buffer = new Uint8Array(MAX_PROXY_V1_LENGTH);
  #length = 0;
  /** v2: 16 + the length field, once read. */
  #total = 0;

  get result(): ProxyHeaderResult {
    return this.#result;
  }

  push(chunk: Uint8Array): ProxyHeaderResult {
    let i = 0;
    while (this.#result.state === "need-more" && i < chunk.length) {
      if (this.#version === 2 && this.#total > 0) {
        const take = Math.min(chunk.length - i, this.#total - this.#length);
        this.#buffer.set(chunk.subarray(i, i + take), this.#length);
        this.#length += take;
        i += take;
        if (this.#length === this.#total) this.#result = decodeV2(this.#buffer.subarray(0, this.#total));
      } else {
        this.#byte(chunk[i++]!);
      }
    }
    return this.#result;
  }

  /** One byte of the signature, the v2 fixed header, or the v1 line. */
  #byte(byte: number): void {
    const at = this.#length;
    this.#buffer[this.#length++] = byte;
    if (at === 0) {
      if (byte === 0x50) this.#version = 1;
      else if (byte === 0x0d) this.#version = 2;
      else this.#fail(NOT_PROXY);
      return;
    }
    if (this.#version === 1) return this.#v1Byte(byte, at);
    if (at < 12) {
      if (byte !== V2_SIGNATURE[at]) this.#fail(NOT_PROXY);
    } else if (at === 12) {
      if (byte >> 4 !== 2) this.#fail(`PROXY v2: unsupported version ${byte >> 4}`);
      else if ((byte & 0xf) > 1) this.#fail(`PROXY v2: unknown command ${byte & 0xf}`);
    } else if (at === 13) {
      if (byte >> 4 > 3) this.#fail(`PROXY v2: unknown address family ${byte >> 4}`);
      else if ((byte & 0xf) > 2) this.#fail(`PROXY v2: unknown transport protocol ${byte & 0xf}`);
    } else if (at === 15) {
      this.#v2Length();
    }
  }

  #v1Byte(byte: number, at: number): void {
    if (at < V1_PREFIX.length) {
      if (byte !== V1_PREFIX.charCodeAt(at)) this.#fail(NOT_PROXY);
    } else if (byte === 0x0a) {
      if (this.#buffer[at - 1] !== 0x0d) this.#fail("PROXY v1: the line must end with CRLF");
      else this.#result = decodeV1(this.#buffer.subarray(0, at - 1));
    } else if (this.#buffer[at - 1] === 0x0d) {
      this.#fail("PROXY v1: CR without LF");
    } else if (byte !== 0x0d && (byte < 0x20 || byte > 0x7e)) {
      this.#fail(`PROXY v1: unexpected byte 0x${byte.toString(16).padStart(2, "0")}`);
    } else if (at === MAX_PROXY_V1_LENGTH - 1) {
      this.#fail(`PROXY v1: no CRLF in the first ${MAX_PROXY_V1_LENGTH} bytes`);
    }
  }

  /** The fixed 16 bytes are in: check the length against the command and family. */
  #v2Length(): void {
    const b = this.#buffer;
    const length = (b[14]! << 8) | b[15]!;
    if (length > MAX_PROXY_V2_LENGTH) return this.#fail(`PROXY v2: header too long (${length} bytes, at most ${MAX_PROXY_V2_LENGTH})`);
    const needed = (b[12]! & 0xf) === 1 ? (ADDRESS_LENGTH[b[13]! >> 4] ?? 0) : 0;
    if (length < needed) return this.#fail(`PROXY v2: ${length} address bytes, family ${b[13]! >> 4} needs ${needed}`);
    this.#total = 16 + length;
    if (length === 0) {
      this.#result = decodeV2(b.subarray(0, 16));
      return;
    }
    const grown = new Uint8Array(this.#total);
    grown.set(b.subarray(0, 16));
    this.#buffer = grown;
  }

  #fail(reason: string): void {
    this.#result = { state: "error", reason };
  }
}

/** Address bytes by v2 family: UNSPEC, INET, INET6, UNIX. */
const ADDRESS_LENGTH = [0, 12, 36, 216];

function decodeV2(header: Uint8Array): ProxyHeaderResult {
  const result = decodeV2Addresses(header);
  if (result.state !== "done") return result;
  // LOCAL (the proxy's own connection, a health check): addresses and TLVs are ignored, as the spec says.
  if ((header[12]! & 0xf) !== 1) return result;
  if (header.length > 16 + (ADDRESS_LENGTH[header[13]! >> 4] ?? 0)) result.tlvs = decodeTlvs(header);
  return result;
}

function decodeV2Addresses(header: Uint8Array): ProxyHeaderResult {
  const headerLength = header.length;
  const unknown = (command: "proxy" | "local"): ProxyHeaderResult => ({
    state: "done",
    version: 2,
    command,
    family: "unknown",
    source: null,
    destination: null,
    headerLength,
  });
  if ((header[12]! & 0xf) === 0) return unknown("local");
  const familyAndTransport = header[13]!;
  // Only TCP is ours to use; the spec lets a receiver treat other valid families as UNSPEC.
  if (familyAndTransport !== 0x11 && familyAndTransport !== 0x21) return unknown("proxy");
  const size = familyAndTransport === 0x11 ? 4 : 16;
  const port = (at: number) => (header[at]! << 8) | header[at + 1]!;
  return {
    state: "done",
    version: 2,
    command: "proxy",
    family: size === 4 ? "tcp4" : "tcp6",
    source: { host: formatIp(header.slice(16, 16 + size)), port: port(16 + size * 2) },
    destination: { host: formatIp(header.slice(16 + size, 16 + size * 2)), port: port(18 + size * 2) },
    headerLength,
  };
}

/** `line` is the v1 header without its CRLF, known to be printable ASCII. */
function decodeV1(line: Uint8Array): ProxyHeaderResult {
  const text = String.fromCharCode(...line);
  const headerLength = line.length + 2;
  const fail = (what: string): ProxyHeaderResult => ({ state: "error", reason: `PROXY v1: ${what} in "${text}"` });
  const parts = text.split(" ");
  if (parts[1] === "UNKNOWN") {
    return { state: "done", version: 1, command: "proxy", family: "unknown", source: null, destination: null, headerLength };
  }
  if (parts[1] !== "TCP4" && parts[1] !== "TCP6") return fail(`unknown protocol "${parts[1]}"`);
  if (parts.length !== 6) return fail("expected 4 fields after the protocol");
  const size = parts[1] === "TCP4" ? 4 : 16;
  const hosts: string[] = [];
  for (const part of [parts[2]!, parts[3]!]) {
    const bytes = size === 16 && !part.includes(":") ? null : parseIp(part);
    if (bytes === null || bytes.length !== size) return fail(`"${part}" is not an ${size === 4 ? "IPv4" : "IPv6"} address`);
    hosts.push(formatIp(bytes));
  }
  const ports: number[] = [];
  for (const part of [parts[4]!, parts[5]!]) {
    if (!/^(0|[1-9]\d{0,4})$/.test(part) || Number(part) > 65535) return fail(`"${part}" is not a port`);
    ports.push(Number(part));
  }
  return {
    state: "done",
    version: 1,
    command: "proxy",
    family: size === 4 ? "tcp4" : "tcp6",
    source: { host: hosts[0]!, port: ports[0]! },
    destination: { host: hosts[1]!, port: ports[1]! },
    headerLength,
  };
}
