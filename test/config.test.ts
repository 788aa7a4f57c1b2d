import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderPlan } from "../src/commands/check.ts";
import { CONFIG_DEFAULTS, ConfigError, configWarnings, loadConfig, parseConfig, type Config, type ConfigFormat } from "../src/config.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FIXTURES = "test/fixtures/config";
const bytes = (text: string) => new TextEncoder().encode(text);

/** The error lines of a config that must fail. */
function errorsOf(text: string, format: ConfigFormat = "toml"): string[] {
  try {
    parseConfig(text, format, `test.${format}`);
  } catch (error) {
    if (error instanceof ConfigError) return error.errors;
    throw error;
  }
  throw new Error("the config was accepted");
}

/** A valid listener and backend, to which a case adds the one thing it breaks. */
const LISTENER = '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n';
const BACKEND = '[backends.redis]\ntargets = ["127.0.0.1:6379"]\n';
const VALID = LISTENER + BACKEND;

const BAD: [name: string, text: string, errors: string[]][] = [
  ["an empty file", "", ["listeners: missing (at least one [[listeners]] table)"]],
  ["no listeners", "listeners = []\n" + BACKEND, ["listeners: expected at least one listener"]],
  [
    "[listeners] written as one table",
    '[listeners]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n' + BACKEND,
    ["listeners: expected an array of tables ([[listeners]]), got a table"],
  ],
  [
    "a misspelt section",
    LISTENER + '[backend.redis]\ntargets = ["127.0.0.1:6379"]\n',
    ['backend: unknown key (did you mean "backends"?)', 'listeners[0].backend: unknown backend "redis"'],
  ],
  [
    "a listener without a backend",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\n' + BACKEND,
    ["listeners[0].backend: missing (the name of the backend to forward to)"],
  ],
  [
    "a listener without an address",
    '[[listeners]]\nbackend = "redis"\n' + BACKEND,
    ['listeners[0].listen: missing (the address to listen on, e.g. "127.0.0.1:11000")'],
  ],
  [
    "a listener naming an unknown backend",
    VALID + '[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "cache"\n',
    ['listeners[1].backend: unknown backend "cache"'],
  ],
  ["no backends at all", LISTENER, ['listeners[0].backend: unknown backend "redis"']],
  [
    "two listeners with one name",
    '[[listeners]]\nname = "a"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nname = "a"\nlisten = "127.0.0.1:11001"\nbackend = "redis"\n' +
      BACKEND,
    ['listeners[1].name: "a" is already used by listeners[0]'],
  ],
  [
    "an unnamed listener named like another",
    '[[listeners]]\nname = "127.0.0.1:11001"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "redis"\n' +
      BACKEND,
    ['listeners[1].name: "127.0.0.1:11001" is already used by listeners[0] (a listener without a name is named after its listen address)'],
  ],
  [
    "two listeners on one address (hostnames compared without case)",
    VALID +
      '[[listeners]]\nname = "b"\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n[[listeners]]\nname = "c"\nlisten = "LOCALHOST:1"\nbackend = "redis"\n[[listeners]]\nname = "d"\nlisten = "localhost:1"\nbackend = "redis"\n',
    ["listeners[1].listen: 127.0.0.1:11000 is already used by listeners[0]", "listeners[3].listen: localhost:1 is already used by listeners[2]"],
  ],
  ["two unnamed listeners on one address: one error, not two", VALID + LISTENER, ["listeners[1].listen: 127.0.0.1:11000 is already used by listeners[0]"]],
  [
    "bad listen addresses",
    '[[listeners]]\nlisten = "127.0.0.1"\nbackend = "redis"\n[[listeners]]\nlisten = 11000\nbackend = "redis"\n[[listeners]]\nlisten = "::1:80"\nbackend = "redis"\n' +
      BACKEND,
    [
      'listeners[0].listen: "127.0.0.1": expected host:port',
      'listeners[1].listen: expected an address such as "127.0.0.1:6379", got 11000',
      'listeners[2].listen: "::1:80": write IPv6 addresses as [addr]:port',
    ],
  ],
  [
    "bad durations",
    '[defaults]\nconnect_timeout = "5x"\nidle_timeout = 5000\ndrain_timeout = "1000h"\nqueue_timeout = true\n' + VALID,
    [
      'defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)',
      'defaults.idle_timeout: expected a duration such as "10s" or "off", got 5000 (add a unit)',
      'defaults.drain_timeout: "1000h" is too long (at most 596h)',
      'defaults.queue_timeout: expected a duration such as "10s" or "off", got true',
    ],
  ],
  [
    "a bad listener override",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nidle_timeout = "10 m"\n' + BACKEND,
    ['listeners[0].idle_timeout: "10 m" is not a duration (use e.g. 500ms, 10s, 2m, or off)'],
  ],
  [
    "negative and fractional counts",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nmax_connections = -1\n[backends.redis]\nretries = 1.5\ntargets = [{ address = "127.0.0.1:6379", max_connections = "100" }]\n',
    [
      "listeners[0].max_connections: expected a whole number ≥ 0, got -1",
      "backends.redis.retries: expected a whole number ≥ 0, got 1.5",
      'backends.redis.targets[0].max_connections: expected a whole number ≥ 0, got "100"',
    ],
  ],
  [
    "weights below 1 or not whole",
    LISTENER + '[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", weight = 0 }, { address = "127.0.0.1:6380", weight = 1.5 }]\n',
    ["backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0", "backends.redis.targets[1].weight: expected a whole number ≥ 1, got 1.5"],
  ],
  [
    "a backend without targets",
    LISTENER + '[backends.redis]\nbalance = "least-conn"\n',
    ['backends.redis.targets: missing (a list of addresses such as ["127.0.0.1:6379"])'],
  ],
  [
    "a key after [[listeners]] belongs to that listener",
    LISTENER + 'backends = ["127.0.0.1:6379"]\n',
    ['listeners[0].backends: unknown key (did you mean "backend"?)', 'listeners[0].backend: unknown backend "redis"'],
  ],
  ["backends written as a list", 'backends = ["127.0.0.1:6379"]\n' + LISTENER, ["backends: expected a table of backends ([backends.NAME]), got an array"]],
  ["a backend with an empty target list", LISTENER + "[backends.redis]\ntargets = []\n", ["backends.redis.targets: expected at least one target"]],
  [
    "targets written as one string",
    LISTENER + '[backends.redis]\ntargets = "127.0.0.1:6379"\n',
    ['backends.redis.targets: expected a list of targets such as ["127.0.0.1:6379"], got "127.0.0.1:6379"'],
  ],
  [
    "the same target twice, in either form",
    LISTENER +
      '[backends.redis]\ntargets = ["127.0.0.1:6379", "127.0.0.1:6380", { address = "127.0.0.1:6379", weight = 2 }, "unix:/tmp/r.sock", "unix:/tmp/r.sock"]\n',
    [
      "backends.redis.targets[2]: 127.0.0.1:6379 is already listed as targets[0]",
      "backends.redis.targets[4]: unix:/tmp/r.sock is already listed as targets[3]",
    ],
  ],
  [
    "bad targets",
    LISTENER + '[backends.redis]\ntargets = ["127.0.0.1:0", 6379, { weight = 2 }, { address = "127.0.0.1:6379", backup = "yes" }]\n',
    [
      'backends.redis.targets[0]: "127.0.0.1:0": port 0 is out of range (1-65535)',
      'backends.redis.targets[1]: expected an address or a table such as { address = "127.0.0.1:6379", weight = 2 }, got 6379',
      'backends.redis.targets[2].address: missing (the target\'s address, e.g. "127.0.0.1:6379")',
      'backends.redis.targets[3].backup: expected true or false, got "yes"',
    ],
  ],
  [
    "an unknown balance",
    LISTENER + '[backends.redis]\nbalance = "leastconn"\ntargets = ["127.0.0.1:6379"]\n[backends.web]\nbalance = 1\ntargets = ["127.0.0.1:80"]\n',
    [
      'backends.redis.balance: unknown balance "leastconn" (use round-robin, least-conn, random-two or source-hash)',
      "backends.web.balance: expected round-robin, least-conn, random-two or source-hash, got 1",
    ],
  ],
  [
    "rise and fall below 1",
    VALID + "[backends.redis.health]\nrise = 0\nfall = -2\n",
    ["backends.redis.health.rise: expected a whole number ≥ 1, got 0", "backends.redis.health.fall: expected a whole number ≥ 1, got -2"],
  ],
  [
    "a health timeout longer than the interval",
    VALID + '[backends.redis.health]\ninterval = "1s"\ntimeout = "1500ms"\n',
    ["backends.redis.health.timeout: 1500ms is longer than the interval (1s)"],
  ],
  [
    "a health timeout longer than the default interval",
    VALID + '[backends.redis.health]\ntimeout = "3s"\n',
    ["backends.redis.health.timeout: 3s is longer than the interval (2s)"],
  ],
  [
    "health checks turned off inside the health table",
    VALID + '[backends.redis.health]\ninterval = "off"\ntimeout = "0"\n',
    [
      'backends.redis.health.interval: expected a duration longer than 0, got "off"',
      'backends.redis.health.timeout: expected a duration longer than 0, got "0"',
    ],
  ],
  [
    "send without expect",
    VALID + '[backends.redis.health]\nsend = "PING\\r\\n"\n',
    ["backends.redis.health.expect: missing (a check that sends must say what the reply starts with)"],
  ],
  ["an empty send", VALID + '[backends.redis.health]\nsend = ""\nexpect = "+PONG"\n', ['backends.redis.health.send: expected a non-empty string, got ""']],
  [
    "unknown keys everywhere, with a guess when one is close",
    '[defaults]\nconnect-timeout = "1s"\n[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\nport = 11000\n[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", Weight = 2 }]\n[backends.redis.health]\nexpected = "+PONG"\n',
    [
      'defaults.connect-timeout: unknown key (did you mean "connect_timeout"?)',
      "listeners[0].port: unknown key (expected one of: name, listen, backend, max_connections, connect_timeout, idle_timeout)",
      'backends.redis.targets[0].Weight: unknown key (did you mean "weight"?)',
      'backends.redis.health.expected: unknown key (did you mean "expect"?)',
    ],
  ],
  [
    "names with spaces (quoted in the path)",
    '[[listeners]]\nname = "my redis"\nlisten = "127.0.0.1:11000"\nbackend = "my cache"\n[backends."my cache"]\ntargets = ["127.0.0.1:6379"]\n',
    [
      'listeners[0].name: expected a name without spaces, got "my redis"',
      'listeners[0].backend: expected a name without spaces, got "my cache"',
      'backends."my cache": expected a name without spaces, got "my cache"',
    ],
  ],
  [
    "tables where values belong, and values where tables belong",
    "defaults = 1979-05-27\n" + LISTENER + '[backends.redis]\ntargets = [["127.0.0.1:6379"]]\nhealth = true\n',
    [
      "defaults: expected a table, got a date or time",
      'backends.redis.targets[0]: expected an address or a table such as { address = "127.0.0.1:6379", weight = 2 }, got an array',
      "backends.redis.health: expected a table, got true",
    ],
  ],
  [
    "TOML that does not parse: the line where the parser stopped",
    '[[listeners]]\nlisten = "127.0.0.1:11000"\nbackend = "redis"\n\n[backends.redis]\ntargets = [\n  "127.0.0.1:6379",\n  "127.0.0.1:6380"\n  "127.0.0.1:6381",\n]\n',
    ["line 9: not valid TOML: Expected ',' or ']' in an array but found '\"'"],
  ],
  ["a key defined twice", VALID + '[defaults]\nidle_timeout = "1m"\nidle_timeout = "2m"\n', ["line 8: not valid TOML: Cannot redefine key 'idle_timeout'"]],
  [
    "every error of a file, not only the first",
    '[defaults]\nconnect_timeout = "5x"\n' +
      LISTENER +
      '[[listeners]]\nlisten = "127.0.0.1:11001"\nbackend = "cache"\n[backends.redis]\ntargets = [{ address = "127.0.0.1:6379", weight = 0 }]\n',
    [
      'defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)',
      "backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0",
      'listeners[1].backend: unknown backend "cache"',
    ],
  ],
  ["an [admin] table without listen", VALID + "[admin]\n", ['admin.listen: missing (the address to serve metrics and status on, e.g. "127.0.0.1:9901")']],
  [
    "a bad admin address, and an unknown admin key",
    VALID + '[admin]\nlisten = "9901"\nport = 9901\n',
    ['admin.listen: "9901": expected host:port', "admin.port: unknown key (expected one of: listen)"],
  ],
  ["the admin listener on a listener's address", VALID + '[admin]\nlisten = "127.0.0.1:11000"\n', ["admin.listen: 127.0.0.1:11000 is already used by listeners[0]"]],
  ["admin written as a plain value", 'admin = "127.0.0.1:9901"\n' + VALID, ['admin: expected a table, got "127.0.0.1:9901"']],
  [
    "an empty access_log",
    'access_log = ""\n' + VALID,
    ['access_log: expected "stdout", "off" or a file path, got ""'],
  ],
  ["access_log as a number", "access_log = 1\n" + VALID, ['access_log: expected "stdout", "off" or a file path, got 1']],
];

const BAD_JSON: [name: string, text: string, errors: string[]][] = [
  [
    "JSON that does not parse (no line: the parser does not say)",
    '{"listeners": [{"listen": "127.0.0.1:11000",}]}',
    ["not valid JSON: Property name must be a string literal"],
  ],
  ["a JSON array at the top", "[]", ["expected a table, got an array"]],
  ["null in JSON", '{"listeners": null}', ["listeners: expected an array of tables ([[listeners]]), got null"]],
  [
    "camelCase keys in JSON",
    '{"listeners": [{"listen": "127.0.0.1:11000", "backend": "redis", "maxConnections": 5}], "backends": {"redis": {"targets": ["127.0.0.1:6379"]}}}',
    ['listeners[0].maxConnections: unknown key (did you mean "max_connections"?)'],
  ],
];

describe("a bad config is rejected with every error, each with its path", () => {
  for (const [name, text, errors] of BAD) test(name, () => expect(errorsOf(text)).toEqual(errors));
  for (const [name, text, errors] of BAD_JSON) test(name, () => expect(errorsOf(text, "json")).toEqual(errors));
});

const EXAMPLE: Config = {
  defaults: { connectTimeout: 5000, idleTimeout: 600_000, drainTimeout: 10_000, queueTimeout: 5000 },
  listeners: [
    {
      name: "redis",
      listen: { kind: "tcp", host: "127.0.0.1", port: 11000 },
      backend: "redis",
      maxConnections: 10_000,
      connectTimeout: 5000,
      idleTimeout: 600_000,
    },
    {
      name: "unix:/tmp/tcprouter-web.sock",
      listen: { kind: "unix", path: "/tmp/tcprouter-web.sock" },
      backend: "web",
      maxConnections: 0,
      connectTimeout: 5000,
      idleTimeout: 60_000,
    },
  ],
  backends: new Map([
    [
      "redis",
      {
        name: "redis",
        balance: "least-conn",
        retries: 2,
        targets: [
          { address: { kind: "tcp", host: "127.0.0.1", port: 6379 }, weight: 1, maxConnections: 0, backup: false },
          { address: { kind: "tcp", host: "127.0.0.1", port: 6380 }, weight: 2, maxConnections: 500, backup: false },
          { address: { kind: "tcp", host: "127.0.0.1", port: 6381 }, weight: 1, maxConnections: 0, backup: true },
        ],
        health: { interval: 2000, timeout: 1000, rise: 2, fall: 3, send: bytes("PING\r\n"), expect: bytes("+PONG") },
      },
    ],
    [
      "web",
      {
        name: "web",
        balance: "round-robin",
        retries: 2,
        targets: [
          { address: { kind: "tcp", host: "localhost", port: 8080 }, weight: 1, maxConnections: 0, backup: false },
          { address: { kind: "tcp", host: "::1", port: 8081 }, weight: 1, maxConnections: 0, backup: false },
        ],
        health: { interval: 5000, timeout: 1000, rise: 2, fall: 3, send: null, expect: null },
      },
    ],
  ]),
};

describe("a valid config resolves to a typed Config", () => {
  test("the annotated example parses to the expected Config", async () => {
    expect(await loadConfig(`${ROOT}${FIXTURES}/example.toml`)).toEqual(EXAMPLE);
  });

  test("the JSON example parses to the same Config", async () => {
    expect(await loadConfig(`${ROOT}${FIXTURES}/example.json`)).toEqual(EXAMPLE);
  });

  test("a minimal config gets every default", () => {
    const config = parseConfig(VALID + "[backends.redis.health]\n", "toml");
    expect(config).toEqual({
      defaults: { connectTimeout: 10_000, idleTimeout: 0, drainTimeout: 10_000, queueTimeout: 5000 },
      listeners: [
        {
          name: "127.0.0.1:11000",
          listen: { kind: "tcp", host: "127.0.0.1", port: 11000 },
          backend: "redis",
          maxConnections: 0,
          connectTimeout: 10_000,
          idleTimeout: 0,
        },
      ],
      backends: new Map([
        [
          "redis",
          {
            name: "redis",
            balance: CONFIG_DEFAULTS.balance,
            retries: 2,
            targets: [{ address: { kind: "tcp", host: "127.0.0.1", port: 6379 }, weight: 1, maxConnections: 0, backup: false }],
            health: { interval: 2000, timeout: 1000, rise: 2, fall: 3, send: null, expect: null },
          },
        ],
      ]),
    });
    expect(parseConfig(VALID, "toml").backends.get("redis")!.health).toBeNull();
  });

  test("a listener's own timeouts override the defaults; the others inherit them", () => {
    const text =
      '[defaults]\nconnect_timeout = "3s"\nidle_timeout = "1m"\n' +
      '[[listeners]]\nname = "a"\nlisten = "127.0.0.1:0"\nbackend = "redis"\nconnect_timeout = "off"\n' +
      '[[listeners]]\nname = "b"\nlisten = "127.0.0.1:0"\nbackend = "redis"\n' +
      BACKEND;
    const [a, b] = parseConfig(text, "toml").listeners;
    expect([a!.connectTimeout, a!.idleTimeout, b!.connectTimeout, b!.idleTimeout]).toEqual([0, 60_000, 3000, 60_000]);
  });

  test("the health timeout defaults to 1s, or to a shorter interval", () => {
    const health = (table: string) => parseConfig(VALID + `[backends.redis.health]\n${table}`, "toml").backends.get("redis")!.health!;
    expect([health('interval = "500ms"\n').timeout, health('interval = "10s"\n').timeout]).toEqual([500, 1000]);
  });

  test("expect alone (a banner check) is allowed, and strings become their UTF-8 bytes", () => {
    const health = parseConfig(VALID + '[backends.redis.health]\nexpect = "SSH-2.0-\\u00e9"\n', "toml").backends.get("redis")!.health!;
    expect(health.send).toBeNull();
    expect(health.expect).toEqual(new Uint8Array([...bytes("SSH-2.0-"), 0xc3, 0xa9]));
  });

  test("[admin] listen and access_log are read; absent or \"off\" they are off", () => {
    const config = parseConfig('access_log = "/var/log/tcprouter/access.log"\n' + VALID + '[admin]\nlisten = "127.0.0.1:9901"\n', "toml");
    expect(config.admin).toEqual({ listen: { kind: "tcp", host: "127.0.0.1", port: 9901 } });
    expect(config.accessLog).toBe("/var/log/tcprouter/access.log");
    expect(parseConfig('access_log = "stdout"\n' + VALID, "toml").accessLog).toBe("stdout");
    const off = parseConfig('access_log = "off"\n' + VALID, "toml");
    expect([off.admin, off.accessLog]).toEqual([undefined, undefined]);
    expect(parseConfig(VALID + '[admin]\nlisten = "unix:/run/tcprouter-admin.sock"\n', "toml").admin).toEqual({ listen: { kind: "unix", path: "/run/tcprouter-admin.sock" } });
  });

  test("an unused backend is allowed, with a warning", () => {
    const config = parseConfig(VALID + '[backends.spare]\ntargets = ["127.0.0.1:6380"]\n', "toml");
    expect([...config.backends.keys()]).toEqual(["redis", "spare"]);
    expect(configWarnings(config)).toEqual(["backends.spare: not used by any listener"]);
    expect(configWarnings(parseConfig(VALID, "toml"))).toEqual([]);
  });
});

describe("loading a file", () => {
  test("a missing file, a directory and an unsupported extension are errors naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-config-"));
    try {
      const failure = (path: string) =>
        loadConfig(path).then(
          () => null,
          (error: ConfigError) => error.message,
        );
      expect(await failure(join(dir, "missing.toml"))).toBe(`${dir}/missing.toml: cannot read the config file: no such file`);
      const folder = join(dir, "folder.toml");
      await Bun.write(join(folder, "x"), "");
      expect(await failure(folder)).toBe(`${folder}: cannot read the config file: is a directory`);
      expect(await failure(join(dir, "tcprouter.yaml"))).toBe(`${dir}/tcprouter.yaml: unsupported file type ".yaml": use .toml or .json`);
      expect(await failure(join(dir, "tcprouter"))).toBe(`${dir}/tcprouter: unsupported file type (no extension): use .toml or .json`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the error's message has one line per error, each prefixed by the source", () => {
    const error = (() => {
      try {
        parseConfig(LISTENER, "toml", "tcprouter.toml");
      } catch (caught) {
        return caught as ConfigError;
      }
    })()!;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.source).toBe("tcprouter.toml");
    expect(error.message).toBe('tcprouter.toml: listeners[0].backend: unknown backend "redis"');
  });
});

const PLAN = `defaults: connect_timeout 5s, idle_timeout 10m, drain_timeout 10s, queue_timeout 5s
listener redis 127.0.0.1:11000 (max_connections 10000) → backend redis (least-conn, retries 2, health: send/expect every 2s)
  127.0.0.1:6379 weight 1
  127.0.0.1:6380 weight 2 max_connections 500
  127.0.0.1:6381 backup
listener unix:/tmp/tcprouter-web.sock (idle_timeout 1m) → backend web (round-robin, retries 2, health: connect every 5s)
  localhost:8080 weight 1
  [::1]:8081 weight 1
`;

test("the plan lists each listener with its backend and targets", () => {
  expect(renderPlan(EXAMPLE)).toBe(PLAN);
  const banner = parseConfig(VALID + '[backends.redis.health]\nexpect = "SSH-"\ninterval = "10s"\n', "toml");
  expect(renderPlan(banner).split("\n")[1]).toBe("listener 127.0.0.1:11000 → backend redis (round-robin, retries 2, health: expect every 10s)");
  expect(renderPlan(parseConfig(VALID, "toml")).split("\n")[1]).toBe("listener 127.0.0.1:11000 → backend redis (round-robin, retries 2, no health checks)");
});

/** `bun run src/cli.ts check ...`, to completion. */
async function check(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([process.execPath, "run", "src/cli.ts", "check", ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("tcprouter check", () => {
  test("prints the plan of a valid file and exits 0", async () => {
    expect(await check("--config", `${FIXTURES}/example.toml`)).toEqual({ code: 0, stdout: PLAN, stderr: "" });
    expect(await check("-c", `${FIXTURES}/example.json`)).toEqual({ code: 0, stdout: PLAN, stderr: "" });
  });

  test("prints every error of an invalid file on stderr, prefixed by the file name, and exits 1", async () => {
    const file = `${FIXTURES}/bad.toml`;
    expect(await check("--config", file)).toEqual({
      code: 1,
      stdout: "",
      stderr: [
        `${file}: defaults.connect_timeout: "5x" is not a duration (use e.g. 500ms, 10s, 2m, or off)`,
        `${file}: backends.redis.targets[0].weight: expected a whole number ≥ 1, got 0`,
        `${file}: backends.redis.health.timeout: 5s is longer than the interval (2s)`,
        `${file}: listeners[1].name: "redis" is already used by listeners[0]`,
        `${file}: listeners[1].backend: unknown backend "cache"`,
        "",
      ].join("\n"),
    });
  });

  test("warns about an unused backend on stderr and still exits 0", async () => {
    const file = `${FIXTURES}/unused-backend.toml`;
    const result = await check("--config", file);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(`${file}: warning: backends.spare: not used by any listener\n`);
    expect(result.stdout).toContain("listener 127.0.0.1:11000 → backend redis");
  });

  test("a missing file or a missing --config exits 1 with one line and no stack trace", async () => {
    const missing = await check("--config", "nope.toml");
    expect(missing).toEqual({ code: 1, stdout: "", stderr: "nope.toml: cannot read the config file: no such file\n" });
    const noFlag = await check();
    expect(noFlag.code).toBe(1);
    expect(noFlag.stderr).toContain("--config is required");
    expect(noFlag.stderr.trim().split("\n")).toHaveLength(1);
  });
});
