/**
 * The schema of a backend's `[backends.NAME.health]` table: timing, the check's steps (or the
 * `send`/`expect` shorthand), AUTH with its password from the environment or a file, a check
 * port or address, `type = "http"`, `init`, `on_down`, `on_up` and `tls`.
 */
import * as v from "valibot";
import { formatDuration } from "../util/duration.ts";
import { Secret } from "../util/secret.ts";
import { DEFAULTS } from "./defaults.ts";
import { describe, isRecord } from "./messages.ts";
import type { HealthAuth, HealthConfig, HealthStep, HttpCheck } from "./health-types.ts";
import { address, boolean, bytes, count, duration, expected, filePath, table } from "./values.ts";

/** The keys of one step; a step has exactly one. */
export const STEP_KEYS = ["send", "send_hex", "expect", "expect_contains", "expect_regex", "expect_hex"] as const;
const STEP_LIST = STEP_KEYS.join(", ");

/** `"2b 4f 4b"` or `"2b4f4b"` → bytes; throws a one-line message. */
export function parseHex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  if (digits.length === 0 || digits.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(digits))
    throw new Error(`expected hex bytes such as "2b4f4b", got ${describe(text)}`);
  return Uint8Array.from(Buffer.from(digits, "hex"));
}

/**
 * One step table (`{ send = "PING\r\n" }`, `{ expect_contains = "role:master" }`) → a step;
 * throws a one-line message naming what is wrong.
 */
export function parseStep(input: unknown): HealthStep {
  if (!isRecord(input)) throw new Error(`expected a table with one of ${STEP_LIST}, got ${describe(input)}`);
  const keys = Object.keys(input);
  const unknown = keys.filter((key) => !(STEP_KEYS as readonly string[]).includes(key));
  if (unknown.length > 0) throw new Error(`unknown key "${unknown[0]}" (a step has one of ${STEP_LIST})`);
  if (keys.length !== 1) throw new Error(keys.length === 0 ? `empty step (expected one of ${STEP_LIST})` : `one key per step, got ${keys.join(" and ")}`);
  const key = keys[0] as (typeof STEP_KEYS)[number];
  const value = input[key];
  if (typeof value !== "string" || value === "") throw new Error(`${key}: expected a non-empty string, got ${describe(value)}`);
  switch (key) {
    case "send":
      return { send: new TextEncoder().encode(value), text: value };
    case "send_hex":
      return { send: hexOf(key, value), text: value };
    case "expect":
      return { expect: "prefix", bytes: new TextEncoder().encode(value), text: value };
    case "expect_hex":
      return { expect: "prefix", bytes: hexOf(key, value), text: value };
    case "expect_contains":
      return { expect: "contains", bytes: new TextEncoder().encode(value), text: value };
    case "expect_regex":
      try {
        return { expect: "regex", regex: new RegExp(value), text: value };
      } catch (error) {
        throw new Error(`${key}: not a valid regular expression (${(error as Error).message.replace(/^Invalid regular expression: /, "")})`);
      }
  }
}

function hexOf(key: string, value: string): Uint8Array {
  try {
    return parseHex(value);
  } catch (error) {
    throw new Error(`${key}: ${(error as Error).message}`);
  }
}

const Step = v.pipe(
  v.unknown(),
  v.rawTransform<unknown, HealthStep>(({ dataset, addIssue, NEVER }) => {
    try {
      return parseStep(dataset.value);
    } catch (error) {
      addIssue({ message: (error as Error).message });
      return NEVER;
    }
  }),
);

const envName = v.pipe(v.string(expected("an environment variable name")), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, expected("an environment variable name")));

/**
 * `auth = { password_env = "REDIS_PASSWORD" }` or `{ password_file = "secret", username = "u" }`.
 * An env password is read here; a file's is read at load (`withFiles`), relative to the
 * config file: until then its Secret is empty and its source names the file.
 */
export const Auth = v.pipe(
  table(
    {
      username: v.optional(v.pipe(v.string(expected("a user name")), v.minLength(1, expected("a user name")))),
      password_env: v.optional(envName),
      password_file: v.optional(filePath),
    },
    {},
    'a table such as { password_env = "REDIS_PASSWORD" }',
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }): HealthAuth => {
    const a = dataset.value;
    if ((a.password_env === undefined) === (a.password_file === undefined)) {
      addIssue({ message: "expected one of password_env and password_file (the password is never written in the config)" });
      return NEVER;
    }
    const username = a.username ?? null;
    if (a.password_file !== undefined) return { username, password: new Secret("", `file ${a.password_file}`) };
    const value = process.env[a.password_env!];
    if (value === undefined || value === "") {
      addIssue({
        message: `the environment variable ${a.password_env} is ${value === undefined ? "not set" : "empty"}`,
        path: [{ type: "object", origin: "value", input: a, key: "password_env", value: a.password_env }],
      });
      return NEVER;
    }
    return { username, password: new Secret(value, `env ${a.password_env}`) };
  }),
);

const port = v.pipe(count(1), v.maxValue(65535, expected("a port from 1 to 65535")));
const picklist = <const T extends string[]>(options: T) =>
  v.picklist(
    options,
    (issue) =>
      `${typeof issue.input === "string" ? `unknown value ${describe(issue.input)}` : `got ${describe(issue.input)}`} (use ${options.map((o) => `"${o}"`).join(" or ")})`,
  );
const status = v.pipe(
  v.number(expected("an HTTP status such as 200")),
  v.integer(expected("an HTTP status such as 200")),
  v.minValue(100, expected("an HTTP status such as 200")),
  v.maxValue(599, expected("an HTTP status such as 200")),
);

const TCP_ONLY = ["send", "expect", "steps", "auth"] as const;
const HTTP_ONLY = ["method", "path", "status", "body", "host"] as const;

export const Health = v.pipe(
  table({
    interval: v.optional(duration(true)),
    timeout: v.optional(duration(true)),
    rise: v.optional(count(1)),
    fall: v.optional(count(1)),
    send: v.optional(bytes),
    expect: v.optional(bytes),
    steps: v.optional(
      v.pipe(v.array(Step, expected('a list of steps such as [{ send = "PING\\r\\n" }, { expect = "+PONG" }]')), v.minLength(1, "expected at least one step")),
    ),
    auth: v.optional(Auth),
    port: v.optional(port),
    address: v.optional(address(false)),
    init: v.optional(picklist(["up", "down"])),
    on_down: v.optional(picklist(["none", "close-sessions"])),
    on_up: v.optional(picklist(["none", "close-backup-sessions"])),
    type: v.optional(picklist(["tcp", "http"])),
    method: v.optional(v.pipe(v.string(expected("an HTTP method such as GET")), v.regex(/^[A-Z]+$/, expected("an HTTP method such as GET (upper case)")))),
    path: v.optional(v.pipe(v.string(expected('a path such as "/primary"')), v.regex(/^\/[^\s]*$/, expected('a path such as "/primary"')))),
    status: v.optional(
      v.union([status, v.pipe(v.array(status), v.minLength(1, "expected at least one status"))], expected("an HTTP status such as 200, or a list of them")),
    ),
    body: v.optional(v.pipe(v.string(expected("a string")), v.minLength(1, expected("a non-empty string")))),
    host: v.optional(v.pipe(v.string(expected("a host name")), v.minLength(1, expected("a host name")))),
    tls: v.optional(boolean),
  }),
  v.forward(
    v.partialCheck(
      [["interval"], ["timeout"]],
      (h) => h.timeout === undefined || h.timeout <= (h.interval ?? DEFAULTS.health.interval),
      (issue) => `${formatDuration(issue.input.timeout!)} is longer than the interval (${formatDuration(issue.input.interval ?? DEFAULTS.health.interval)})`,
    ),
    ["timeout"],
  ),
  v.forward(
    v.partialCheck(
      [["send"], ["expect"], ["type"]],
      (h) => h.send === undefined || h.expect !== undefined || h.type === "http",
      "missing (a check that sends must say what the reply starts with)",
    ),
    ["expect"],
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const h = dataset.value;
    const at = (key: string) =>
      [{ type: "object" as const, origin: "value" as const, input: h, key, value: (h as Record<string, unknown>)[key] }] as [v.IssuePathItem];
    if (h.steps !== undefined)
      for (const key of ["send", "expect"] as const)
        if (h[key] !== undefined) addIssue({ message: "not with steps (send/expect is the short form of two steps: put them in steps)", path: at(key) });
    if (h.address !== undefined && h.port !== undefined) addIssue({ message: "not with address (address gives the port too)", path: at("port") });
    const http = h.type === "http";
    for (const key of http ? TCP_ONLY : HTTP_ONLY)
      if (h[key] !== undefined) addIssue({ message: http ? 'not with type = "http"' : 'only with type = "http"', path: at(key) });
  }),
  v.transform((h): HealthConfig => {
    const interval = h.interval ?? DEFAULTS.health.interval;
    const http: HttpCheck | null =
      h.type === "http"
        ? {
            method: h.method ?? DEFAULTS.httpCheck.method,
            path: h.path ?? DEFAULTS.httpCheck.path,
            status: h.status === undefined ? [...DEFAULTS.httpCheck.status] : typeof h.status === "number" ? [h.status] : h.status,
            body: h.body ?? null,
            host: h.host ?? null,
          }
        : null;
    const config: HealthConfig = {
      interval,
      // 1 s, or the interval when that is shorter: a check ends before the next one starts.
      timeout: h.timeout ?? Math.min(DEFAULTS.health.timeout, interval),
      rise: h.rise ?? DEFAULTS.health.rise,
      fall: h.fall ?? DEFAULTS.health.fall,
      send: h.send ?? null,
      expect: h.expect ?? null,
      steps: h.steps ?? [],
      auth: h.auth ?? null,
      port: h.port ?? null,
      address: h.address ?? null,
      init: h.init ?? DEFAULTS.health.init,
      onDown: h.on_down ?? DEFAULTS.health.onDown,
      onUp: h.on_up ?? DEFAULTS.health.onUp,
      http,
    };
    if (h.tls !== undefined) config.tls = h.tls;
    return config;
  }),
);
