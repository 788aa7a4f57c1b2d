/**
 * SNI passthrough, the pure parts: reading the server name and ALPN protocols from a TLS
 * ClientHello without terminating TLS, the fatal alert sent when no route takes the name, and
 * the server-name route matcher.
 *
 * `ClientHelloReader` is fed the client's bytes as they arrive, in any split (down to 1 byte),
 * with the hello spread over any number of TLS records. It copies the handshake bytes it needs
 * and never changes its input: the session keeps every chunk it pushed and forwards them
 * unchanged once a route is picked. Malformed, truncated or hostile input gives an "error"
 * result, never an exception. A hello longer than `MAX_CLIENT_HELLO_LENGTH` is refused as soon
 * as its length field is read, and a record as soon as its header would take the hello past
 * `MAX_CLIENT_HELLO_WIRE_BYTES`: that bounds what a session buffers before it has a route.
 */

export type ClientHelloResult = { state: "need-more" } | { state: "done"; serverName: string | null; alpn: string[] } | { state: "error"; reason: string };

/**
 * The largest ClientHello body accepted (its 24-bit handshake length). 16 KiB leaves room for
 * post-quantum key shares (X25519MLKEM768 adds 1,216 bytes) and padding; browsers send < 2 KiB.
 */
export const MAX_CLIENT_HELLO_LENGTH = 16 * 1024;
/**
 * The most bytes a hello may take on the wire, record headers included: twice the largest
 * hello, so even the largest fits in records of 5 bytes or more (real clients use one record
 * of up to 16 KiB; a 16 KiB hello in 100-byte records takes 17,208 bytes).
 */
export const MAX_CLIENT_HELLO_WIRE_BYTES = 2 * MAX_CLIENT_HELLO_LENGTH;

/** TLS alert descriptions a listener sends (RFC 8446 §6). */
export const ALERT_HANDSHAKE_FAILURE = 40;
export const ALERT_UNRECOGNIZED_NAME = 112;

const CONTENT_HANDSHAKE = 22;
const CONTENT_ALERT = 21;
const HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 8446 §5.1: a plaintext fragment is at most 2^14 bytes. */
const MAX_RECORD_LENGTH = 16_384;
/** version 2 + random 32 + session id 1 + one cipher suite 2+2 + one compression method 1+1. */
const MIN_CLIENT_HELLO_LENGTH = 41;
const EXTENSION_SERVER_NAME = 0;
const EXTENSION_ALPN = 16;

const NEED_MORE: ClientHelloResult = Object.freeze({ state: "need-more" });

/**
 * Reads one ClientHello from the start of a client stream. `push` each chunk until the result
 * is not "need-more"; after that `push` returns the same result and ignores its input (bytes
 * after the hello, such as 0-RTT data, are the caller's to forward).
 */
export class ClientHelloReader {
  #result: ClientHelloResult = NEED_MORE;
  #recordHeader = new Uint8Array(5);
  #recordHeaderRead = 0;
  /** Bytes of the current record's fragment still to come; 0 = a record header comes next. */
  #fragmentLeft = 0;
  /** Record headers and fragments announced so far. */
  #wireBytes = 0;
  #handshakeHeader = new Uint8Array(4);
  #handshakeHeaderRead = 0;
  /** The hello body, allocated once its length is known. */
  #body: Uint8Array | null = null;
  #bodyRead = 0;

  get result(): ClientHelloResult {
    return this.#result;
  }

  push(chunk: Uint8Array): ClientHelloResult {
    let i = 0;
    while (this.#result.state === "need-more" && i < chunk.length) {
      if (this.#fragmentLeft === 0) {
        this.#recordHeaderByte(chunk[i++]!);
      } else {
        const end = i + Math.min(this.#fragmentLeft, chunk.length - i);
        this.#fragmentLeft -= end - i;
        this.#handshakeBytes(chunk, i, end);
        i = end;
      }
    }
    return this.#result;
  }

  #recordHeaderByte(byte: number): void {
    const at = this.#recordHeaderRead++;
    this.#recordHeader[at] = byte;
    const first = this.#wireBytes === 0;
    if (at === 0 && byte !== CONTENT_HANDSHAKE) {
      this.#fail(first ? "not a TLS handshake" : `TLS record of type ${byte} before the ClientHello ended`);
    } else if (at === 1 && byte !== 3) {
      this.#fail(first ? "not a TLS handshake" : `TLS record version ${byte}.x before the ClientHello ended`);
    } else if (at === 4) {
      this.#recordHeaderRead = 0;
      const length = (this.#recordHeader[3]! << 8) | byte;
      if (length === 0) return this.#fail("empty TLS handshake record");
      if (length > MAX_RECORD_LENGTH) return this.#fail(`TLS record too long (${length} bytes, at most ${MAX_RECORD_LENGTH})`);
      this.#wireBytes += 5 + length;
      if (this.#wireBytes > MAX_CLIENT_HELLO_WIRE_BYTES) return this.#fail(`ClientHello records take more than ${MAX_CLIENT_HELLO_WIRE_BYTES} bytes`);
      this.#fragmentLeft = length;
    }
  }

  /** Handshake bytes `chunk[from..to)` from inside a record. */
  #handshakeBytes(chunk: Uint8Array, from: number, to: number): void {
    let i = from;
    while (this.#body === null && i < to) {
      const at = this.#handshakeHeaderRead++;
      const byte = chunk[i++]!;
      this.#handshakeHeader[at] = byte;
      if (at === 0 && byte !== HANDSHAKE_CLIENT_HELLO) return this.#fail(`not a ClientHello (handshake type ${byte})`);
      if (at === 3) {
        const h = this.#handshakeHeader;
        const length = (h[1]! << 16) | (h[2]! << 8) | byte;
        if (length > MAX_CLIENT_HELLO_LENGTH) return this.#fail(`ClientHello too long (${length} bytes, at most ${MAX_CLIENT_HELLO_LENGTH})`);
        if (length < MIN_CLIENT_HELLO_LENGTH) return this.#fail(`ClientHello too short (${length} bytes)`);
        this.#body = new Uint8Array(length);
      }
    }
    const body = this.#body;
    if (body === null || i === to) return;
    const take = Math.min(to - i, body.length - this.#bodyRead);
    body.set(chunk.subarray(i, i + take), this.#bodyRead);
    this.#bodyRead += take;
    if (this.#bodyRead === body.length) this.#result = parseClientHello(body);
  }

  #fail(reason: string): void {
    this.#result = { state: "error", reason };
  }
}

/** The whole input at once: "need-more" means it ends before the hello does. */
export function readClientHello(bytes: Uint8Array): ClientHelloResult {
  return new ClientHelloReader().push(bytes);
}

/** RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2: the body of a complete ClientHello message. */
function parseClientHello(b: Uint8Array): ClientHelloResult {
  const end = b.length;
  const u16 = (at: number) => (b[at]! << 8) | b[at + 1]!;
  const malformed = (field: string): ClientHelloResult => ({ state: "error", reason: `malformed ClientHello: bad ${field}` });
  if (b[0] !== 3) return { state: "error", reason: `unsupported ClientHello version ${b[0]}.${b[1]}` };
  let p = 34; // legacy_version, random
  const sessionId = b[p++]!;
  if (sessionId > 32 || p + sessionId > end) return malformed("session_id");
  p += sessionId;
  if (p + 2 > end) return malformed("cipher_suites");
  const suites = u16(p);
  p += 2;
  if (suites < 2 || suites % 2 !== 0 || p + suites > end) return malformed("cipher_suites");
  p += suites;
  if (p + 1 > end) return malformed("compression_methods");
  const methods = b[p++]!;
  if (methods < 1 || p + methods > end) return malformed("compression_methods");
  p += methods;
  if (p === end) return { state: "done", serverName: null, alpn: [] };
  if (p + 2 > end || p + 2 + u16(p) !== end) return malformed("extensions length");
  p += 2;
  let serverName: string | null = null;
  let alpn: string[] = [];
  let sawServerName = false;
  let sawAlpn = false;
  while (p < end) {
    if (p + 4 > end) return malformed("extensions length");
    const type = u16(p);
    const length = u16(p + 2);
    p += 4;
    if (p + length > end) return malformed(`extension ${type} length`);
    if (type === EXTENSION_SERVER_NAME) {
      if (sawServerName) return { state: "error", reason: "malformed ClientHello: two server_name extensions" };
      sawServerName = true;
      const name = parseServerName(b, p, p + length);
      if (name === undefined) return malformed("server_name extension");
      if (name instanceof Error) return { state: "error", reason: name.message };
      serverName = name;
    } else if (type === EXTENSION_ALPN) {
      if (sawAlpn) return { state: "error", reason: "malformed ClientHello: two ALPN extensions" };
      sawAlpn = true;
      const protocols = parseAlpn(b, p, p + length);
      if (protocols === null) return malformed("ALPN extension");
      alpn = protocols;
    }
    p += length;
  }
  return { state: "done", serverName, alpn };
}

/**
 * RFC 6066 §3: the host_name of a server_name list; null when the list has none, undefined
 * when it is malformed, an Error for a name that is not a DNS host name.
 */
function parseServerName(b: Uint8Array, from: number, end: number): string | null | undefined | Error {
  if (end - from < 2 || ((b[from]! << 8) | b[from + 1]!) !== end - from - 2 || end - from === 2) return undefined;
  let name: string | null = null;
  for (let p = from + 2; p < end; ) {
    if (p + 3 > end) return undefined;
    const type = b[p]!;
    const length = (b[p + 1]! << 8) | b[p + 2]!;
    p += 3;
    if (length === 0 || p + length > end) return undefined;
    if (type === 0) {
      if (name !== null) return new Error("malformed ClientHello: two host names in server_name");
      if (length > 255) return new Error(`server name too long (${length} bytes)`);
      for (let i = p; i < p + length; i++) {
        if (!HOST_NAME_BYTE[b[i]!]) return new Error(`server name is not a host name (byte 0x${b[i]!.toString(16).padStart(2, "0")})`);
      }
      name = String.fromCharCode(...b.subarray(p, p + length));
    }
    p += length;
  }
  return name;
}

/** Letters, digits, "-", "_" and ".": what DNS names (and punycode) are made of. */
const HOST_NAME_BYTE = Array.from({ length: 256 }, (_, byte) => /[A-Za-z0-9._-]/.test(String.fromCharCode(byte)));

/** RFC 7301 §3.1: the protocol_name_list, or null when malformed. */
function parseAlpn(b: Uint8Array, from: number, end: number): string[] | null {
  if (end - from < 3 || ((b[from]! << 8) | b[from + 1]!) !== end - from - 2) return null;
  const protocols: string[] = [];
  for (let p = from + 2; p < end; ) {
    const length = b[p++]!;
    if (length === 0 || p + length > end) return null;
    protocols.push(String.fromCharCode(...b.subarray(p, p + length)));
    p += length;
  }
  return protocols;
}

/**
 * A fatal TLS alert record: send it, then close. The record version is 3.3 (TLS 1.2), which
 * TLS 1.0–1.3 clients all accept before a version is agreed.
 */
export function tlsAlert(description: number): Uint8Array {
  if (!Number.isInteger(description) || description < 0 || description > 255) {
    throw new RangeError(`TLS alert description must be a whole number 0-255, got ${description}`);
  }
  return Uint8Array.of(CONTENT_ALERT, 3, 3, 0, 2, 2, description);
}

// ── Routes by server name ──────────────────────────────────────────────────────────────────

export class ServerNameError extends Error {}

/** A server name as routes compare it: lower case, no trailing dot. */
export function normalizeServerName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * A server name or wildcard as written in config → its normalized form (lower case, no
 * trailing dot). Throws ServerNameError quoting the input.
 */
export function parseServerNamePattern(input: string): string {
  const name = normalizeServerName(input.trim());
  const labels = name.split(".");
  const fail = (why: string) => new ServerNameError(`"${input}": ${why}`);
  if (name === "*") throw fail('a lone "*" matches every name: use a default route');
  if (name.length > 253) throw fail("longer than 253 characters");
  labels.forEach((label, index) => {
    if (label === "*" && index === 0) return;
    if (label.includes("*")) throw fail('"*" is only allowed as the whole first label ("*.example.com")');
    if (!LABEL.test(label)) throw fail(label === "" ? "empty label" : `"${label}" is not a valid DNS label`);
  });
  return name;
}
