/**
 * A client-side QUIC Initial encoder for the QUIC preface tests: keys (derived here, apart from
 * src/protocol/quic-crypto.ts, so each checks the other against the RFC vectors), frames, and
 * protected Initial packets (AEAD, then header protection) for v1 and v2.
 */
import { createCipheriv, createHmac, hkdfSync } from "node:crypto";
import { buildClientHello, type HelloOptions, unframe } from "./client-hello.ts";

export const V1 = 0x00000001;
export const V2 = 0x6b3343cf;

const PARAMS = {
  [V1]: { salt: "38762cf7f55934b34d179ae6a4c80cadccbb7f0a", prefix: "quic", initialType: 0 },
  [V2]: { salt: "0dede3def700a6db819381be6e269dcbf9bd2ed9", prefix: "quicv2", initialType: 1 },
} as const;

export interface Keys {
  secret: Buffer;
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

function label(name: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${name}`, "latin1");
  return Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
}

function expand(secret: Buffer, name: string, length: number): Buffer {
  return createHmac("sha256", secret)
    .update(Buffer.concat([label(name, length), Buffer.from([1])]))
    .digest()
    .subarray(0, length);
}

const keyCache = new Map<string, Keys>();

/** The client's Initial keys: Extract and Expand in one hkdfSync call for the secret. Cached (the fuzz test seals many packets). */
export function clientKeys(version: number, dcid: Uint8Array): Keys {
  const cacheKey = `${version}:${Buffer.from(dcid).toString("hex")}`;
  const cached = keyCache.get(cacheKey);
  if (cached !== undefined) return cached;
  if (keyCache.size > 1000) keyCache.clear();
  const keys = deriveKeys(version, dcid);
  keyCache.set(cacheKey, keys);
  return keys;
}

function deriveKeys(version: number, dcid: Uint8Array): Keys {
  const params = PARAMS[version as keyof typeof PARAMS];
  const secret = Buffer.from(hkdfSync("sha256", dcid, Buffer.from(params.salt, "hex"), label("client in", 32), 32));
  return {
    secret,
    key: expand(secret, `${params.prefix} key`, 16),
    iv: expand(secret, `${params.prefix} iv`, 12),
    hp: expand(secret, `${params.prefix} hp`, 16),
  };
}

export function varint(value: number): Uint8Array {
  if (value < 0x40) return Uint8Array.of(value);
  if (value < 0x4000) return Uint8Array.of(0x40 | (value >> 8), value & 0xff);
  if (value < 0x40000000) return Uint8Array.of(0x80 | (value >>> 24), (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff);
  const high = Math.floor(value / 2 ** 32);
  return Uint8Array.of(0xc0 | (high >>> 24), (high >> 16) & 0xff, (high >> 8) & 0xff, high & 0xff, ...varint32(value >>> 0));
}

function varint32(value: number): number[] {
  return [value >>> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function cryptoFrame(offset: number, data: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(0x06), varint(offset), varint(data.length), data);
}

export function ackFrame(largest: number): Uint8Array {
  return concat(Uint8Array.of(0x02), varint(largest), varint(0), varint(0), varint(0));
}

export const PING = Uint8Array.of(0x01);

export interface InitialOptions {
  version?: number;
  dcid: Uint8Array;
  scid?: Uint8Array;
  token?: Uint8Array;
  packetNumber?: number;
  /** Bytes of the packet number on the wire, 1 to 4 (default 4, as in RFC 9001 A.2). */
  pnLength?: number;
  /** The frames. */
  payload: Uint8Array;
  /** Appends PADDING until the packet takes at least this many bytes. */
  padTo?: number;
  /** The two reserved bits of the first byte (must be 0). */
  reserved?: number;
}

/** The unprotected header of an Initial (its Length field is always 2 bytes, as in the RFCs). */
export function initialHeader(options: InitialOptions, payloadLength: number): Uint8Array {
  const { version = V1, dcid, scid = Uint8Array.of(), token = Uint8Array.of(), packetNumber = 0, pnLength = 4, reserved = 0 } = options;
  const type = PARAMS[version as keyof typeof PARAMS].initialType;
  const length = pnLength + payloadLength + 16;
  const pn = Array.from({ length: pnLength }, (_, i) => Math.floor(packetNumber / 256 ** (pnLength - 1 - i)) & 0xff);
  return concat(
    Uint8Array.of(0xc0 | (type << 4) | (reserved << 2) | (pnLength - 1), ...varint32(version), dcid.length),
    dcid,
    Uint8Array.of(scid.length),
    scid,
    varint(token.length),
    token,
    Uint8Array.of(0x40 | (length >> 8), length & 0xff),
    Uint8Array.from(pn),
  );
}

/** A protected client Initial (RFC 9001 §5.3, §5.4). */
export function sealInitial(options: InitialOptions): Uint8Array {
  const { version = V1, dcid, packetNumber = 0, pnLength = 4, padTo = 0 } = options;
  let payload = options.payload;
  const overhead = initialHeader(options, payload.length).length + 16;
  if (overhead + payload.length < padTo) payload = concat(payload, new Uint8Array(padTo - overhead - payload.length));
  const header = initialHeader(options, payload.length);
  const keys = clientKeys(version, dcid);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= Math.floor(packetNumber / 256 ** (7 - i)) & 0xff;
  const cipher = createCipheriv("aes-128-gcm", keys.key, nonce);
  cipher.setAAD(header);
  const sealed = Buffer.concat([cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
  const packet = concat(header, sealed);
  const pnOffset = header.length - pnLength;
  const ecb = createCipheriv("aes-128-ecb", keys.hp, null);
  ecb.setAutoPadding(false);
  const mask = ecb.update(packet.subarray(pnOffset + 4, pnOffset + 20));
  packet[0] = packet[0]! ^ (mask[0]! & 0x0f);
  for (let i = 0; i < pnLength; i++) packet[pnOffset + i] = packet[pnOffset + i]! ^ mask[1 + i]!;
  return packet;
}

/** Coalesced Initials in one datagram; the last is padded so the datagram takes at least `size` bytes. */
export function sealDatagram(packets: InitialOptions[], size = 1200): Uint8Array {
  const sealed = packets.slice(0, -1).map((packet) => sealInitial(packet));
  const used = sealed.reduce((sum, packet) => sum + packet.length, 0);
  const last = packets.at(-1);
  if (last !== undefined) sealed.push(sealInitial({ ...last, padTo: Math.max(last.padTo ?? 0, size - used) }));
  return concat(...sealed);
}

/** The handshake bytes of a synthetic ClientHello (no TLS record headers). */
export function helloHandshake(options: HelloOptions = {}): Uint8Array {
  return unframe(buildClientHello(options));
}

/** `bytes` cut into `parts` CRYPTO frames of about equal size, with their offsets. */
export function cryptoFrames(bytes: Uint8Array, parts: number): Uint8Array[] {
  const size = Math.ceil(bytes.length / parts);
  return Array.from({ length: parts }, (_, i) => cryptoFrame(i * size, bytes.subarray(i * size, (i + 1) * size)));
}

/** One padded Initial per frame list, each in its own 1,200-byte datagram, packet numbers 0, 1, … */
export function helloDatagrams(hello: Uint8Array, parts: number, options: { version?: number; dcid: Uint8Array }): Uint8Array[] {
  return cryptoFrames(hello, parts).map((frame, packetNumber) => sealInitial({ ...options, payload: frame, packetNumber, padTo: 1200 }));
}

export function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));
}
