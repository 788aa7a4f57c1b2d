/** Pure tests of health check steps: what a step table parses to, and how an expect step matches a reply. */
import { describe, expect, test } from "bun:test";
import { checkSteps, describeStep, matchStep, replyEnd } from "../../../src/backend/health/check-steps.ts";
import { checkAddress, type HealthConfig, type HealthStep } from "../../../src/backend/health/checker.ts";
import { encodeCommand } from "../../../src/protocol/resp.ts";
import { parseHex, parseStep } from "../../../src/config/health-schema.ts";
import { Secret } from "../../../src/util/secret.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
type Expect = Exclude<HealthStep, { send: Uint8Array }>;

describe("parseStep", () => {
  const cases: [string, unknown, string][] = [
    ["send", { send: "PING\r\n" }, 'send "PING\\r\\n"'],
    ["send_hex", { send_hex: "50 49 4e 47 0d 0a" }, 'send "50 49 4e 47 0d 0a"'],
    ["expect (prefix)", { expect: "+PONG" }, 'prefix "+PONG"'],
    ["expect_hex (binary prefix)", { expect_hex: "2b504f4e47" }, 'prefix "2b504f4e47"'],
    ["expect_contains", { expect_contains: "role:master" }, 'contains "role:master"'],
    ["expect_regex", { expect_regex: "role:(master|slave)" }, "regex /role:(master|slave)/"],
  ];
  for (const [name, input, described] of cases) {
    test(`parses ${name}`, () => expect(describeStep(parseStep(input))).toBe(described));
  }

  test("a hex step holds the bytes the hex spells", () => {
    expect(parseStep({ send_hex: "50 49 4e 47" })).toEqual({ send: bytes("PING"), text: "50 49 4e 47" });
    expect(parseStep({ expect_hex: "2B4F4B" })).toEqual({ expect: "prefix", bytes: bytes("+OK"), text: "2B4F4B" });
  });

  const errors: [string, unknown, string][] = [
    ["not a table", "PING", 'expected a table with one of send, send_hex, expect, expect_contains, expect_regex, expect_hex, got "PING"'],
    ["an empty table", {}, "empty step (expected one of send, send_hex, expect, expect_contains, expect_regex, expect_hex)"],
    ["two keys", { send: "a", expect: "b" }, "one key per step, got send and expect"],
    [
      "an unknown key",
      { expect_prefix: "x" },
      'unknown key "expect_prefix" (a step has one of send, send_hex, expect, expect_contains, expect_regex, expect_hex)',
    ],
    ["an empty string", { send: "" }, 'send: expected a non-empty string, got ""'],
    ["a number", { expect: 1 }, "expect: expected a non-empty string, got 1"],
    ["odd hex", { send_hex: "abc" }, 'send_hex: expected hex bytes such as "2b4f4b", got "abc"'],
    ["not hex", { expect_hex: "zz" }, 'expect_hex: expected hex bytes such as "2b4f4b", got "zz"'],
    ["a bad regex", { expect_regex: "role:(" }, "expect_regex: not a valid regular expression (missing ))"],
  ];
  for (const [name, input, message] of errors) {
    test(`rejects ${name}`, () => expect(() => parseStep(input)).toThrow(message));
  }

  test("parseHex ignores spaces and case", () => expect(parseHex("0D 0a")).toEqual(Uint8Array.of(13, 10)));
});

describe("matchStep", () => {
  const info = "$120\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
  const cases: [string, Expect, string, number | "more" | "fail"][] = [
    ["a prefix that matches uses its length", { expect: "prefix", bytes: bytes("+PONG"), text: "+PONG" }, "+PONG\r\n", 5],
    ["a prefix not complete yet waits", { expect: "prefix", bytes: bytes("+PONG"), text: "+PONG" }, "+PO", "more"],
    ["a prefix byte that differs fails at once", { expect: "prefix", bytes: bytes("+PONG"), text: "+PONG" }, "-ERR", "fail"],
    ["an empty reply waits", { expect: "prefix", bytes: bytes("+OK"), text: "+OK" }, "", "more"],
    ["a substring found uses up to its end", { expect: "contains", bytes: bytes("role:master"), text: "role:master" }, info, info.indexOf("role:master") + 11],
    [
      "a substring not found waits",
      { expect: "contains", bytes: bytes("role:master"), text: "role:master" },
      "$120\r\n# Replication\r\nrole:slave\r\n",
      "more",
    ],
    ["a regex found uses up to its end", { expect: "regex", regex: /role:(master|slave)\r\n/, text: "" }, info, info.indexOf("role:master") + 13],
    ["a regex not found waits", { expect: "regex", regex: /connected_slaves:[1-9]/, text: "" }, "# Replication\r\nconnected_slaves:0\r\n", "more"],
  ];
  for (const [name, step, reply, result] of cases) test(name, () => expect(matchStep(step, bytes(reply))).toBe(result));

  test("a sticky or global regex matches from the start of each reply", () => {
    const step: Expect = { expect: "regex", regex: /ok/g, text: "ok" };
    expect(matchStep(step, bytes("ok"))).toBe(2);
    expect(matchStep(step, bytes("ok"))).toBe(2);
  });
});

describe("checkSteps", () => {
  const base: HealthConfig = { interval: 1000, timeout: 500, rise: 1, fall: 1, send: null, expect: null };

  test("AUTH comes first as a RESP command expecting +OK, then the shorthand, then the steps", () => {
    const steps = checkSteps({
      ...base,
      auth: { username: "probe", password: new Secret("s3cret", "env X") },
      send: bytes("PING\r\n"),
      expect: bytes("+PONG"),
      steps: [parseStep({ send: "INFO replication\r\n" }), parseStep({ expect_contains: "role:master" })],
    });
    expect(steps.map(describeStep)).toEqual([
      'send "AUTH probe [secret]"',
      'prefix "+OK"',
      'send "PING\\r\\n"',
      'prefix "+PONG"',
      'send "INFO replication\\r\\n"',
      'contains "role:master"',
    ]);
    expect(Buffer.from((steps[0] as { send: Uint8Array }).send).toString()).toBe("*3\r\n$4\r\nAUTH\r\n$5\r\nprobe\r\n$6\r\ns3cret\r\n");
  });

  test("encodeCommand counts bytes, not characters", () => {
    expect(Buffer.from(encodeCommand(["ECHO", "é"])).toString()).toBe("*2\r\n$4\r\nECHO\r\n$2\r\né\r\n");
  });

  test("a Secret prints as [secret] in strings and JSON", () => {
    const secret = new Secret("hunter2", "file /run/pw");
    expect(`${secret}`).toBe("[secret]");
    expect(JSON.stringify({ secret })).toBe('{"secret":"[secret]"}');
    expect(Bun.inspect(secret)).not.toContain("hunter2");
  });

  test("the check address is the check's address, else the target's host with the check's port", () => {
    const target = { kind: "tcp", host: "10.0.0.5", port: 5432 } as const;
    expect(checkAddress(base, target)).toEqual(target);
    expect(checkAddress({ ...base, port: 8008 }, target)).toEqual({ ...target, port: 8008 });
    expect(checkAddress({ ...base, address: { kind: "tcp", host: "127.0.0.1", port: 1 } }, target)).toEqual({ kind: "tcp", host: "127.0.0.1", port: 1 });
  });
});

// What an expect consumes (the Redis, text and binary cases end to end: reply-consumption.test.ts).
describe("replyEnd", () => {
  const cases: [string, string, number, number | "more"][] = [
    ["a RESP simple string whole", "+OK\r\n+PONG\r\n", 3, 5],
    ["a RESP simple string whose CRLF is still to come", "+OK", 3, "more"],
    ["a RESP bulk string whole (a role check)", "$28\r\n# Replication\r\nrole:master\r\n\r\n+PONG\r\n", 31, 35],
    ["RESP replies through the one the match ends in", "+PONG\r\n+PONG\r\n+PONG\r\n", 12, 14],
    ["a text line through its LF", "220 ready\r\n250 ok\r\n", 3, 11],
    ["a match that ends with its LF", "220 ready\n250", 10, 10],
    ["a text line whose end is still to come", "220 rea", 3, "more"],
    ["not RESP after all: IMAP's greeting is a line", "* OK ready\r\n* next", 4, 12],
    ["a lone byte: undecided until the next bytes arrive", "N", 1, "more"],
    ["binary: a control byte ends the reply at the match", "R\u0000\u0000\u0000\u0008", 1, 1],
  ];
  for (const [name, reply, matched, end] of cases) test(name, () => expect(replyEnd(bytes(reply), matched)).toBe(end));
});
