/**
 * QUIC Initial packet protection, the client's side only, as a server (or a router in front of
 * one) removes it: Initial keys from the client's first Destination Connection ID (RFC 9001
 * §5.2, RFC 9369 §3.3), header protection with AES-128-ECB (RFC 9001 §5.4) and AES-128-GCM
 * payload decryption (RFC 9001 §5.3). Versions 1 and 2 only; their Initials always use
 * TLS_AES_128_GCM_SHA256.
 *
 * Initial keys protect against off-path tampering, not eavesdropping: anyone who sees the first
 * packet can derive them. They still stay inside src/protocol/quic*.ts; the reader's results never
 * carry them. Nothing here throws on hostile input: a failed decryption returns null.
 */
import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";

export const QUIC_V1 = 0x00000001;
export const QUIC_V2 = 0x6b3343cf;

interface VersionParams {
  /** RFC 9001 §5.2 / RFC 9369 §3.3.1. */
  salt: Uint8Array;
  /** The HKDF-Expand-Label labels for key, iv and hp (RFC 9369 §3.3.2). */
  labels: readonly [key: string, iv: string, hp: string];
  /** The long-header packet type bits of an Initial (RFC 9369 §3.2). */
  initialType: number;
}

const VERSIONS: ReadonlyMap<number, VersionParams> = new Map([
  [QUIC_V1, { salt: hex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), labels: ["quic key", "quic iv", "quic hp"], initialType: 0b00 }],
  [QUIC_V2, { salt: hex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), labels: ["quicv2 key", "quicv2 iv", "quicv2 hp"], initialType: 0b01 }],
]);

/** The Initial packet type bits for a supported version, or undefined for any other version. */
export function initialPacketType(version: number): number | undefined {
  return VERSIONS.get(version)?.initialType;
}

/** What removing an Initial's protection takes. */
export interface InitialKeys {
  key: Uint8Array;
  iv: Uint8Array;
  hp: Uint8Array;
}

/** The client's Initial secret (RFC 9001 §5.2): HKDF-Extract(salt, dcid), then "client in". */
export function clientInitialSecret(version: number, dcid: Uint8Array): Uint8Array | null {
  const params = VERSIONS.get(version);
  if (params === undefined) return null;
  const initialSecret = createHmac("sha256", params.salt).update(dcid).digest();
  return expandLabel(initialSecret, "client in", 32);
}

/** The client's Initial key, iv and header protection key, or null for an unsupported version. */
export function clientInitialKeys(version: number, dcid: Uint8Array): InitialKeys | null {
  const params = VERSIONS.get(version);
  const secret = clientInitialSecret(version, dcid);
  if (params === undefined || secret === null) return null;
  const [key, iv, hp] = params.labels;
  return { key: expandLabel(secret, key, 16), iv: expandLabel(secret, iv, 12), hp: expandLabel(secret, hp, 16) };
}

/** TLS 1.3 HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, over SHA-256. */
function expandLabel(secret: Uint8Array, label: string, length: number): Uint8Array {
  const full = `tls13 ${label}`;
  const info = Uint8Array.of(length >> 8, length & 0xff, full.length, ...Buffer.from(full, "latin1"), 0);
  // node:crypto's hkdfSync always runs Extract first; Expand alone, for up to 32 bytes, is one
  // HMAC block: T(1) = HMAC(secret, info || 0x01).
  return new Uint8Array(createHmac("sha256", secret).update(info).update(Uint8Array.of(1)).digest().subarray(0, length));
}

/** The 5 header protection mask bytes for a 16-byte sample (RFC 9001 §5.4.3). */
export function headerProtectionMask(keys: InitialKeys, sample: Uint8Array): Uint8Array {
  const cipher = createCipheriv("aes-128-ecb", keys.hp, null);
  cipher.setAutoPadding(false);
  return new Uint8Array(cipher.update(sample).subarray(0, 5));
}

/**
 * Decrypts one packet's payload (RFC 9001 §5.3): the nonce is the iv XOR the packet number,
 * the associated data the unprotected header, the last 16 bytes of `sealed` the tag. Null when
 * the tag does not verify.
 */
export function openPayload(keys: InitialKeys, packetNumber: number, header: Uint8Array, sealed: Uint8Array): Uint8Array | null {
  if (sealed.length < 16) return null;
  const nonce = Uint8Array.from(keys.iv);
  // Packet numbers here are below 2^53; XOR them into the last 8 bytes, high word then low.
  const high = Math.floor(packetNumber / 2 ** 32);
  const low = packetNumber >>> 0;
  for (let i = 0; i < 4; i++) {
    nonce[4 + i]! ^= (high >>> (24 - 8 * i)) & 0xff;
    nonce[8 + i]! ^= (low >>> (24 - 8 * i)) & 0xff;
  }
  try {
    const decipher = createDecipheriv("aes-128-gcm", keys.key, nonce);
    decipher.setAAD(header);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const plain = decipher.update(sealed.subarray(0, sealed.length - 16));
    const rest = decipher.final();
    return rest.length === 0 ? new Uint8Array(plain.buffer, plain.byteOffset, plain.length) : new Uint8Array(Buffer.concat([plain, rest]));
  } catch {
    return null;
  }
}

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}
