// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are config text holding ${NAME} references
/** Environment variables in config values (config/interpolate.ts), and through parseConfig with every error at its path. */
import { describe, expect, test } from "bun:test";
import { renderPlan } from "../../src/commands/check.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { interpolate } from "../../src/config/interpolate.ts";

const ENV = { HOST: "127.0.0.1", PORT: "7000", EMPTY: "", DOLLAR: "a$b" };

describe("interpolate", () => {
  test.each([
    ["${HOST}:${PORT}", "127.0.0.1:7000"],
    ["${MISSING:-10.0.0.1}:6379", "10.0.0.1:6379"],
    ["${EMPTY:-fallback}", "fallback"],
    ["${EMPTY-fallback}", ""],
    ["${MISSING-fallback}", "fallback"],
    ["${MISSING:-}", ""],
    ["price: $$5", "price: $5"],
    ["$$${HOST}", "$127.0.0.1"],
    ["${DOLLAR}", "a$b"],
    ["a $ alone and $HOST stay", "a $ alone and $HOST stay"],
    ["no placeholders", "no placeholders"],
  ])("%p → %p", (text, expected) => {
    const result = interpolate({ value: text }, ENV);
    expect(result.errors).toEqual([]);
    expect(result.data).toEqual({ value: expected });
  });

  test("walks tables and arrays, leaves keys, numbers and booleans alone", () => {
    const data = { "${HOST}": 1, list: ["${PORT}", 2, true, { deep: "${HOST}" }] };
    expect(interpolate(data, ENV)).toEqual({
      data: { "${HOST}": 1, list: ["7000", 2, true, { deep: "127.0.0.1" }] },
      errors: [],
      whole: [
        ["list", 0],
        ["list", 3, "deep"],
      ],
    });
  });

  // Regression: a TOML date (a Date object) came out of interpolation as an empty table.
  test("a TOML date is left as it is", () => {
    const date = new Date("1979-05-27T00:00:00Z");
    expect((interpolate({ when: date }, ENV).data as { when: unknown }).when).toBe(date);
  });

  test("records the paths of strings that are one reference and nothing else", () => {
    const data = { a: "${PORT}", b: "${MISSING:-3}", c: "${MISSING-x}", d: "x${PORT}", e: "${PORT}${PORT}", f: "$${PORT}", g: ["${HOST}"] };
    expect(interpolate(data, ENV).whole).toEqual([["a"], ["b"], ["c"], ["g", 0]]);
  });

  test("an unset variable without default, and a malformed reference, are errors at their paths", () => {
    const result = interpolate({ listeners: [{ listen: "${NOPE}:1" }], backends: { b: { targets: ["${1bad}"] } } }, ENV);
    expect(result.errors).toEqual([
      { path: ["listeners", 0, "listen"], message: "environment variable NOPE is not set (give it a value, or a default: ${NOPE:-value})" },
      { path: ["backends", "b", "targets", 0], message: '"${1bad}" is not a variable reference: use ${NAME}, ${NAME:-default} or $$ for a literal $' },
    ]);
  });
});

describe("parseConfig with the environment", () => {
  const toml = `
[[listeners]]
listen = "\${HOST}:\${PORT}"
backend = "app"
idle_timeout = "\${IDLE:-5m}"

[backends.app]
targets = ["\${TARGET_HOST:-127.0.0.1}:6379"]
`;

  test("values come from the environment, defaults where unset", () => {
    const config = parseConfig(toml, "toml", "env.toml", ENV);
    expect(config.listeners[0]!.listen).toEqual({ kind: "tcp", host: "127.0.0.1", port: 7000 });
    expect(config.listeners[0]!.idleTimeout).toBe(300_000);
    expect(config.backends.get("app")!.targets[0]!.address).toEqual({ kind: "tcp", host: "127.0.0.1", port: 6379 });
  });

  test("an unset variable is one line with its path, with the file's other errors", () => {
    let error: ConfigError | null = null;
    try {
      parseConfig(`${toml}\n[backends.other]\ntargets = []\nbalance = "fastest"\n`, "toml", "env.toml", { PORT: "7000" });
    } catch (caught) {
      error = caught as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.errors[0]).toBe("listeners[0].listen: environment variable HOST is not set (give it a value, or a default: ${HOST:-value})");
    expect(error!.errors.some((line) => line.startsWith("backends.other.balance:"))).toBe(true);
  });

  test("an interpolated value is validated like a written one", () => {
    expect(() => parseConfig(toml, "toml", "env.toml", { ...ENV, IDLE: "soon" })).toThrow("listeners[0].idle_timeout:");
  });
});

describe("a whole reference where a number or a boolean belongs", () => {
  const toml = `
[[listeners]]
listen = "127.0.0.1:0"
backend = "app"
max_connections = "\${MAX}"
accept_proxy = "\${PROXY:-false}"

[backends.app]
targets = [{ address = "127.0.0.1:6379", weight = "\${WEIGHT:-3}" }]

[backends.app.health]
type = "http"
port = "\${CHECK_PORT:-8008}"
status = "\${STATUS:-204}"
`;
  const errorsOf = (env: Record<string, string>) => {
    try {
      parseConfig(toml, "toml", "env.toml", env);
    } catch (error) {
      if (error instanceof ConfigError) return error.errors;
      throw error;
    }
    throw new Error("the config was accepted");
  };

  test("becomes that number or boolean, as Compose does for its typed fields", () => {
    const config = parseConfig(toml, "toml", "env.toml", { MAX: "100", PROXY: "false" });
    const listener = config.listeners[0]!;
    const backend = config.backends.get("app")!;
    expect([listener.maxConnections, listener.acceptProxy, backend.targets[0]!.weight]).toEqual([100, false, 3]);
    expect([backend.health!.port, backend.health!.http!.status]).toEqual([8008, [204]]);
  });

  test("a value that is no number keeps its error, with the value it got", () => {
    expect(errorsOf({ MAX: "lots", WEIGHT: "1x", PROXY: "yes" })).toEqual([
      'listeners[0].accept_proxy: expected true or false, got "yes"',
      'listeners[0].max_connections: expected a whole number ≥ 0, got "lots"',
      'backends.app.targets[0].weight: expected a whole number ≥ 1, got "1x"',
    ]);
  });

  test("text around a reference keeps it a string", () => {
    expect(() => parseConfig(toml.replace('"${MAX}"', '"1${MAX}"'), "toml", "env.toml", { MAX: "0" })).toThrow(
      'listeners[0].max_connections: expected a whole number ≥ 0, got "10"',
    );
  });
});

describe("secrets", () => {
  const SECRET = "s3cret-from-the-environment";
  const toml = `
[[listeners]]
listen = "\${HOST}:\${PORT}"
backend = "redis"

[backends.redis]
targets = ["127.0.0.1:6379"]

[backends.redis.health]
auth = { password_env = "\${PASSWORD_VARIABLE:-TCPROUTER_INTERPOLATE_PW}" }
steps = [{ send = "PING\\r\\n" }, { expect = "+PONG" }]
`;

  test("a password from password_env is never in check's plan or the config's JSON, whatever was interpolated", () => {
    process.env.TCPROUTER_INTERPOLATE_PW = SECRET;
    try {
      const config = parseConfig(toml, "toml", "env.toml", ENV);
      expect(config.backends.get("redis")!.health!.auth!.password.reveal()).toBe(SECRET);
      const plan = renderPlan(config);
      expect(plan).toContain("127.0.0.1:7000");
      expect(plan).toContain("[secret]");
      expect(plan).not.toContain(SECRET);
      expect(JSON.stringify([...config.backends.values(), ...config.listeners])).not.toContain(SECRET);
    } finally {
      delete process.env.TCPROUTER_INTERPOLATE_PW;
    }
  });

  test("a password interpolated into an auth table is refused without printing it", () => {
    const inline = toml.replace('password_env = "${PASSWORD_VARIABLE:-TCPROUTER_INTERPOLATE_PW}"', 'password = "${PW}"');
    let error: ConfigError | null = null;
    try {
      parseConfig(inline, "toml", "env.toml", { ...ENV, PW: SECRET });
    } catch (caught) {
      error = caught as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.errors[0]).toStartWith("backends.redis.health.auth.password: unknown key");
    expect(error!.message).not.toContain(SECRET);
  });
});
