/**
 * The steps of a health check probe (checker.ts runs them): the list a config gives, how an
 * expect step matches the reply so far, what of the reply a match consumes, and how a step is
 * shown in logs and `check`.
 */
import type { HealthConfig, HealthStep } from "../../config/types.ts";
import { authCommand, parseResp } from "../../protocol/resp.ts";

/** An expect step waits for at most this many reply bytes; past them without a match it fails. */
export const MAX_REPLY = 64 * 1024;

/**
 * The steps a probe runs, in order: `auth` as a Redis AUTH command expecting `+OK`, then the
 * `send`/`expect` shorthand, then `steps`.
 */
export function checkSteps(config: HealthConfig): HealthStep[] {
  const steps: HealthStep[] = [];
  const auth = config.auth ?? null;
  if (auth !== null) {
    steps.push({ send: authCommand(auth.username, auth.password.reveal()), text: auth.username === null ? "AUTH [secret]" : `AUTH ${auth.username} [secret]` });
    steps.push({ expect: "prefix", bytes: new TextEncoder().encode("+OK"), text: "+OK" });
  }
  if (config.send !== null && config.send.length > 0) steps.push({ send: config.send, text: new TextDecoder().decode(config.send) });
  if (config.expect !== null && config.expect.length > 0) steps.push({ expect: "prefix", bytes: config.expect, text: new TextDecoder().decode(config.expect) });
  steps.push(...(config.steps ?? []));
  return steps;
}

/**
 * Whether `reply` (the bytes after the previous match) satisfies an expect step: the number of
 * bytes the match used (the next expect reads after them), `"more"` while it may still match,
 * `"fail"` when it cannot (a prefix byte that differs).
 */
export function matchStep(step: Exclude<HealthStep, { send: Uint8Array }>, reply: Uint8Array): number | "more" | "fail" {
  if (step.expect === "prefix") {
    const expected = step.bytes;
    const n = Math.min(reply.length, expected.length);
    for (let i = 0; i < n; i++) if (reply[i] !== expected[i]) return "fail";
    return reply.length >= expected.length ? expected.length : "more";
  }
  if (step.expect !== "regex") {
    const at = Buffer.from(reply.buffer, reply.byteOffset, reply.length).indexOf(step.bytes);
    return at < 0 ? "more" : at + step.bytes.length;
  }
  step.regex.lastIndex = 0;
  const found = step.regex.exec(Buffer.from(reply.buffer, reply.byteOffset, reply.length).toString("latin1"));
  return found === null ? "more" : found.index + found[0].length;
}

/** The first byte of a RESP reply: + - : $ * (simple string, error, integer, bulk string, array). */
const RESP_TYPES = new Set([0x2b, 0x2d, 0x3a, 0x24, 0x2a]);
const LF = 0x0a;

/**
 * What an expect consumes: the whole reply its match ends in, so the next expect starts at the
 * next reply. `reply` starts where the expect began reading; `matched` is where its match ended.
 * Returns where the reply ends, or `"more"` while its end has not arrived.
 *
 * - RESP (the reply starts with `+ - : $ *` and parses as RESP): through the end of the RESP
 *   reply the match ends in: `+OK` takes its CRLF, `role:master` the rest of the INFO bulk string.
 * - Text: through the end of the line the match ends in (the next LF).
 * - Binary: a byte below 0x20 other than tab and CR before that LF ends the reply at the match:
 *   `expect_hex = "4e"` consumes PostgreSQL's one-byte `N`, and nothing of what follows.
 */
export function replyEnd(reply: Uint8Array, matched: number): number | "more" {
  const buffer = Buffer.from(reply.buffer, reply.byteOffset, reply.length);
  if (RESP_TYPES.has(buffer[0]!)) {
    try {
      let at = 0;
      while (at < matched) {
        const value = parseResp(buffer, at);
        if (value === null) return "more";
        at = value.end;
      }
      return at;
    } catch {
      // not RESP after all (IMAP's "* OK"): a text line
    }
  }
  if (matched > 0 && buffer[matched - 1] === LF) return matched;
  for (let i = matched; i < buffer.length; i++) {
    const byte = buffer[i]!;
    if (byte === LF) return i + 1;
    if (byte < 0x20 && byte !== 0x09 && byte !== 0x0d) return matched;
  }
  return "more";
}

/** A step for messages and `check`: `send "PING\r\n"`, `expect contains "role:master"`. Never a secret (AUTH shows `[secret]`). */
export function describeStep(step: HealthStep): string {
  if ("send" in step) return `send ${JSON.stringify(step.text)}`;
  return `${step.expect} ${step.expect === "regex" ? String(step.regex) : JSON.stringify(step.text)}`;
}
