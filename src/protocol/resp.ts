/**
 * RESP, the Redis protocol, as far as health checks and Sentinel need it: commands out (an
 * array of bulk strings) and one reply in, parsed from a buffer that may hold only part of it.
 */

export type Resp = string | number | null | RespError | Resp[];

/** An error reply (`-NOAUTH Authentication required.`). */
export class RespError {
  constructor(readonly message: string) {}
}

/** Replies larger than this are a broken peer. */
const MAX_REPLY = 1024 * 1024;

/**
 * One reply of `buffer` from `at`: its value and where it ends; null while it is incomplete.
 * Throws on bytes that are not RESP.
 */
export function parseResp(buffer: Buffer, at = 0): { value: Resp; end: number } | null {
  if (at >= buffer.length) return null;
  const eol = buffer.indexOf("\r\n", at);
  if (eol < 0) {
    if (buffer.length - at > MAX_REPLY) throw new Error("reply line too long");
    return null;
  }
  const line = buffer.toString("latin1", at + 1, eol);
  switch (buffer[at]) {
    case 0x2b: // +
      return { value: line, end: eol + 2 };
    case 0x2d: // -
      return { value: new RespError(line), end: eol + 2 };
    case 0x3a: // :
      return { value: Number(line), end: eol + 2 };
    case 0x24: {
      // $
      const n = wholeNumber(line);
      if (n < 0) return { value: null, end: eol + 2 };
      if (n > MAX_REPLY) throw new Error("bulk string too long");
      if (buffer.length < eol + 4 + n) return null;
      return { value: buffer.toString("utf8", eol + 2, eol + 2 + n), end: eol + 4 + n };
    }
    case 0x2a: {
      // *
      const n = wholeNumber(line);
      if (n < 0) return { value: null, end: eol + 2 };
      const items: Resp[] = [];
      let end = eol + 2;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buffer, end);
        if (item === null) return null;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`not a RESP reply (starts with ${JSON.stringify(String.fromCharCode(buffer[at]!))})`);
  }
}

function wholeNumber(text: string): number {
  if (!/^-?\d+$/.test(text)) throw new Error(`bad length ${JSON.stringify(text)}`);
  return Number(text);
}

/** A command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const arg of args) text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
  return new TextEncoder().encode(text);
}

/** `AUTH password` or `AUTH username password` (Redis 6 ACL users). */
export function authCommand(username: string | null, password: string): Uint8Array {
  return encodeCommand(username === null ? ["AUTH", password] : ["AUTH", username, password]);
}
