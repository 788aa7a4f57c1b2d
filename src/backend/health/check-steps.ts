/**
 * The steps of a health check probe (checker.ts runs them): the list a config gives, how an
 * expect step matches the reply so far, and how a step is shown in logs and `check`.
 */
import type { HealthConfig, HealthStep } from "../../config/types.ts";
import { authCommand } from "../../protocol/resp.ts";

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

/** A step for messages and `check`: `send "PING\r\n"`, `expect contains "role:master"`. Never a secret (AUTH shows `[secret]`). */
export function describeStep(step: HealthStep): string {
  if ("send" in step) return `send ${JSON.stringify(step.text)}`;
  return `${step.expect} ${step.expect === "regex" ? String(step.regex) : JSON.stringify(step.text)}`;
}
