/** The [backends.NAME.health] table: steps, auth secrets, check address, http, init, on_down, each error with its path. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderPlan } from "../../src/commands/check.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

const HEAD = '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[backends.redis]\ntargets = ["127.0.0.1:6379"]\n[backends.redis.health]\n';
const dir = mkdtempSync(join(tmpdir(), "tcprouter-health-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorsOf(health: string): string[] {
  try {
    parseConfig(HEAD + health, "toml", join(dir, "test.toml"));
  } catch (error) {
    if (error instanceof ConfigError) return error.errors;
    throw error;
  }
  throw new Error("the config was accepted");
}

const health = (text: string) => parseConfig(HEAD + text, "toml", join(dir, "test.toml")).backends.get("redis")!.health!;

describe("health config errors name their path", () => {
  const cases: [string, string, string[]][] = [
    [
      "a bad step among good ones",
      'steps = [{ send = "PING\\r\\n" }, { expect = "+PONG", send = "x" }, { expect_regex = "(" }, "PING"]\n',
      [
        "backends.redis.health.steps[1]: one key per step, got expect and send",
        "backends.redis.health.steps[2]: expect_regex: not a valid regular expression (missing ))",
        'backends.redis.health.steps[3]: expected a table with one of send, send_hex, expect, expect_contains, expect_regex, expect_hex, got "PING"',
      ],
    ],
    ["an empty step list", "steps = []\n", ["backends.redis.health.steps: expected at least one step"]],
    [
      "steps with the shorthand",
      'send = "PING\\r\\n"\nexpect = "+PONG"\nsteps = [{ expect = "+PONG" }]\n',
      [
        "backends.redis.health.send: not with steps (send/expect is the short form of two steps: put them in steps)",
        "backends.redis.health.expect: not with steps (send/expect is the short form of two steps: put them in steps)",
      ],
    ],
    [
      "auth without a password source",
      'auth = { username = "u" }\n',
      ["backends.redis.health.auth: expected one of password_env and password_file (the password is never written in the config)"],
    ],
    [
      "auth with a password in the file",
      'auth = { password = "x" }\n',
      ["backends.redis.health.auth.password: unknown key (expected one of: username, password_env, password_file)"],
    ],
    [
      "auth from an unset variable",
      'auth = { password_env = "TCPROUTER_TEST_UNSET_PW" }\n',
      ["backends.redis.health.auth.password_env: the environment variable TCPROUTER_TEST_UNSET_PW is not set"],
    ],
    [
      "auth from a missing file",
      'auth = { password_file = "missing.pw" }\n',
      [`backends.redis.health.auth.password_file: cannot read ${dir}/missing.pw: no such file`],
    ],
    ["a bad check port", "port = 70000\n", ["backends.redis.health.port: expected a port from 1 to 65535, got 70000"]],
    ["port with address", 'port = 8008\naddress = "127.0.0.1:8008"\n', ["backends.redis.health.port: not with address (address gives the port too)"]],
    ["a bad init", 'init = "unknown"\n', ['backends.redis.health.init: unknown value "unknown" (use "up" or "down")']],
    ["a bad on_down", 'on_down = "shutdown-sessions"\n', ['backends.redis.health.on_down: unknown value "shutdown-sessions" (use "none" or "close-sessions")']],
    [
      "tls checks on a plain backend",
      "tls = true\n",
      ["backends.redis.health.tls: only for a backend with tls (its checks then use TLS by default; tls = false checks in plain TCP)"],
    ],
    ["http keys on a tcp check", 'path = "/primary"\n', ['backends.redis.health.path: only with type = "http"']],
    [
      "tcp keys and bad values on an http check",
      'type = "http"\nsend = "x"\nstatus = 99\npath = "primary"\n',
      [
        'backends.redis.health.path: expected a path such as "/primary", got "primary"',
        "backends.redis.health.status: expected an HTTP status such as 200, got 99",
        'backends.redis.health.send: not with type = "http"',
      ],
    ],
  ];
  for (const [name, text, errors] of cases) test(name, () => expect(errorsOf(text)).toEqual(errors));
});

describe("health config values", () => {
  test("a password comes from the environment or a file, and never shows in check output", () => {
    process.env.TCPROUTER_TEST_PW = "env-secret-1";
    writeFileSync(join(dir, "redis.pw"), "file-secret-2\n");
    const fromEnv = health('auth = { password_env = "TCPROUTER_TEST_PW" }\nsteps = [{ send = "PING\\r\\n" }, { expect = "+PONG" }]\n');
    expect(fromEnv.auth!.password.reveal()).toBe("env-secret-1");
    const config = parseConfig(HEAD + 'auth = { username = "probe", password_file = "redis.pw" }\n', "toml", join(dir, "test.toml"));
    expect(config.backends.get("redis")!.health!.auth!.password.reveal()).toBe("file-secret-2");
    const plan = renderPlan(config);
    expect(plan).toContain(`health: steps send "AUTH probe [secret]" → prefix "+OK" every 2s, password from file ${dir}/redis.pw`);
    expect(plan).not.toContain("file-secret-2");
    expect(JSON.stringify([...config.backends.values()])).not.toContain("file-secret-2");
    delete process.env.TCPROUTER_TEST_PW;
  });

  test("an http check gets GET / and 200 unless told", () => {
    expect(health('type = "http"\nport = 8008\n').http).toEqual({ method: "GET", path: "/", status: [200], body: null, host: null });
    const patroni = health('type = "http"\nport = 8008\npath = "/primary"\nstatus = [200, 204]\nbody = "running"\n');
    expect(patroni.http).toEqual({ method: "GET", path: "/primary", status: [200, 204], body: "running", host: null });
    expect(patroni.port).toBe(8008);
  });

  test("init, on_down and on_up are read and shown by check", () => {
    const config = parseConfig(
      HEAD +
        'init = "down"\non_down = "close-sessions"\non_up = "close-backup-sessions"\nsteps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]\n',
      "toml",
      join(dir, "t.toml"),
    );
    const h = config.backends.get("redis")!.health!;
    expect([h.init, h.onDown, h.onUp]).toEqual(["down", "close-sessions", "close-backup-sessions"]);
    expect(renderPlan(config)).toContain(
      'health: steps send "INFO replication\\r\\n" → contains "role:master" every 2s, init down, on_down close-sessions, on_up close-backup-sessions',
    );
  });
});
