/**
 * What an expect step consumes, against a real redis-server (with and without requirepass) and
 * against text and binary peers: every documented form of auth, send, expect and steps.
 *
 * Regression: an expect consumed only the bytes it matched, so the next expect read the rest of
 * that reply first. `auth` with `send = "PING\r\n"`, `expect = "+PONG"` never passed against a
 * real Redis: the implicit `+OK` step left `\r\n` and the prefix `+PONG` met `\r\n+PONG`. Two
 * prefix expects in a row failed the same way, and a prefix after `expect_contains =
 * "role:master"` met the rest of the INFO reply. Now an expect consumes the whole reply its
 * match ends in (a RESP reply whole; a text line through its LF; binary bytes as matched), so
 * the next expect starts at the next reply.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { HealthChecker, type CheckedTarget } from "../../../src/backend/health/checker.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { captureLogger, freePort, waitFor } from "../../helpers/net.ts";
import { hasRedis, once, type RedisServer, startRedisOn } from "../../helpers/redis.ts";

if (!hasRedis) console.warn("reply-consumption.test.ts: redis-server or redis-cli not found, the Redis cases are skipped");

const PASSWORD = "s3cret-probe";
const ENV = "TCPROUTER_TEST_CHECK_PASSWORD";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tcprouter-reply-consumption-"));
  writeFileSync(join(dir, "password"), `${PASSWORD}\n`);
  process.env[ENV] = PASSWORD;
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  delete process.env[ENV];
});

/** The checks of `health` (TOML keys of the health table) against 127.0.0.1:`port`: up after one passed check, or the first failure. */
async function verdict(port: number, health: string): Promise<{ up: boolean; failure: string | null }> {
  const config = parseConfig(
    `[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "b"\n[backends.b]\ntargets = ["127.0.0.1:${port}"]\n` +
      `[backends.b.health]\ninterval = "300ms"\ntimeout = "300ms"\nrise = 1\nfall = 1\ninit = "down"\n${health}\n`,
    "toml",
    join(dir, "tcprouter.toml"),
  );
  const { logger, lines } = captureLogger(4);
  const checker = new HealthChecker("b", config.backends.get("b")!.health!, logger);
  const target: CheckedTarget = { address: { kind: "tcp", host: "127.0.0.1", port }, key: `127.0.0.1:${port}`, healthy: false };
  try {
    checker.setTargets([target]);
    const failed = () => lines.find((line) => line.includes("failed: "));
    await waitFor(() => target.healthy || failed() !== undefined, 5000, "a check result");
    return { up: target.healthy, failure: failed()?.split("failed: ")[1] ?? null };
  } finally {
    checker.stop();
  }
}

const UP = { up: true, failure: null };

/** Documented forms that pass on a primary (each with and without auth below). */
const PASSING: [string, string][] = [
  ["the short form send/expect", 'send = "PING\\r\\n"\nexpect = "+PONG"'],
  ["a role check (contains)", 'steps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]'],
  ["a role check (regex)", 'steps = [{ send = "INFO replication\\r\\n" }, { expect_regex = "role:(master)" }]'],
  ["two prefix expects in a row", 'steps = [{ send = "PING\\r\\n" }, { expect = "+PONG" }, { send = "PING\\r\\n" }, { expect = "+PONG" }]'],
  [
    "a prefix after a role check",
    'steps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }, { send = "PING\\r\\n" }, { expect = "+PONG" }]',
  ],
  [
    "a role check after a prefix",
    'steps = [{ send = "PING\\r\\n" }, { expect = "+PONG" }, { send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]',
  ],
  ["hex steps", 'steps = [{ send_hex = "50 49 4e 47 0d 0a" }, { expect_hex = "2b504f4e47" }, { send = "PING\\r\\n" }, { expect = "+PONG" }]'],
  ["pipelined sends, then two expects", 'steps = [{ send = "PING\\r\\nPING\\r\\n" }, { expect = "+PONG" }, { expect = "+PONG" }]'],
];

describe.skipIf(!hasRedis)("checks against a real redis-server", () => {
  const servers: RedisServer[] = [];
  let open: RedisServer; // no password
  let protectedPrimary: RedisServer; // requirepass, and an ACL user `probe`
  let replica: RedisServer; // requirepass, a replica of protectedPrimary

  beforeAll(async () => {
    open = await startRedisOn(freePort());
    servers.push(open);
    protectedPrimary = await startRedisOn(freePort());
    servers.push(protectedPrimary);
    replica = await startRedisOn(freePort());
    servers.push(replica);
    await once(protectedPrimary.port, ["ACL", "SETUSER", "probe", "on", `>${PASSWORD}`, "+@all", "~*"]);
    await once(protectedPrimary.port, ["CONFIG", "SET", "requirepass", PASSWORD]);
    await once(replica.port, ["CONFIG", "SET", "masterauth", PASSWORD]);
    await once(replica.port, ["REPLICAOF", "127.0.0.1", String(protectedPrimary.port)]);
    await once(replica.port, ["CONFIG", "SET", "requirepass", PASSWORD]);
  }, 30_000);
  afterAll(async () => {
    for (const server of servers) await server.kill();
  });

  for (const [name, health] of PASSING) {
    test(`${name}: passes without requirepass`, async () => expect(await verdict(open.port, health)).toEqual(UP));
    test(`${name}: passes after auth (password_file)`, async () =>
      expect(await verdict(protectedPrimary.port, `auth = { password_file = "password" }\n${health}`)).toEqual(UP));
  }

  test("auth from password_env, and an ACL username, then the short form", async () => {
    expect(await verdict(protectedPrimary.port, `auth = { password_env = "${ENV}" }\nsend = "PING\\r\\n"\nexpect = "+PONG"`)).toEqual(UP);
    expect(await verdict(protectedPrimary.port, `auth = { password_file = "password", username = "probe" }\nsend = "PING\\r\\n"\nexpect = "+PONG"`)).toEqual(
      UP,
    );
  });

  test("the documented role check (auth, INFO replication, role:master) passes on the primary and fails on a replica", async () => {
    const health = 'auth = { password_file = "password" }\nsteps = [{ send = "INFO replication\\r\\n" }, { expect_contains = "role:master" }]';
    expect(await verdict(protectedPrimary.port, health)).toEqual(UP);
    // The replica's INFO is one whole reply without role:master: the check waits for it to the timeout.
    expect(await verdict(replica.port, health)).toEqual({ up: false, failure: "timeout" });
    const prefix = 'auth = { password_file = "password" }\nsteps = [{ send = "ROLE\\r\\n" }, { expect = "*3\\r\\n$6\\r\\nmaster" }]';
    expect(await verdict(protectedPrimary.port, prefix)).toEqual(UP);
    expect(await verdict(replica.port, prefix)).toEqual({ up: false, failure: 'unexpected reply (expected prefix "*3\\r\\n$6\\r\\nmaster")' });
  });

  test("without auth, or with a wrong password, a protected node fails at the first expect", async () => {
    expect(await verdict(protectedPrimary.port, 'send = "PING\\r\\n"\nexpect = "+PONG"')).toEqual({
      up: false,
      failure: 'unexpected reply (expected prefix "+PONG")',
    });
    process.env.TCPROUTER_TEST_WRONG_PASSWORD = "nope";
    try {
      expect(await verdict(protectedPrimary.port, 'auth = { password_env = "TCPROUTER_TEST_WRONG_PASSWORD" }\nsend = "PING\\r\\n"\nexpect = "+PONG"')).toEqual({
        up: false,
        failure: 'unexpected reply (expected prefix "+OK")',
      });
    } finally {
      delete process.env.TCPROUTER_TEST_WRONG_PASSWORD;
    }
  });
});

// ── Text and binary peers ───────────────────────────────────────────────────────────────────

/** A peer that writes `banner` on connect, then for each chunk it reads the next of `replies` (each written as separate writes). */
function peer(banner: string | Uint8Array | null, replies: (string | Uint8Array)[][]): TCPSocketListener<{ n: number }> {
  return Bun.listen<{ n: number }>({
    hostname: "127.0.0.1",
    port: 0,
    data: { n: 0 },
    socket: {
      open(socket: Socket<{ n: number }>) {
        socket.data = { n: 0 };
        if (banner !== null) socket.write(banner);
      },
      data(socket: Socket<{ n: number }>) {
        const parts = replies[socket.data.n++] ?? [];
        for (const [i, part] of parts.entries()) setTimeout(() => socket.write(part), i * 15);
      },
      error() {},
    },
  });
}

describe("text and binary peers", () => {
  test("a text protocol: a prefix expect consumes its line, so the next prefix reads the next line", async () => {
    using server = peer("220 ready\r\n", [["250 ok\r\n"]]);
    expect(await verdict(server.port, 'steps = [{ expect = "220" }, { send = "NOOP\\r\\n" }, { expect = "250 ok" }]')).toEqual(UP);
  });

  test("a line that arrives in pieces is still consumed through its end", async () => {
    using server = peer(null, [["+OK"], ["\r\n+PONG\r\n"]]);
    expect(await verdict(server.port, 'steps = [{ send = "A\\r\\n" }, { expect = "+OK" }, { send = "B\\r\\n" }, { expect = "+PONG" }]')).toEqual(UP);
  });

  test("a binary protocol (PostgreSQL's SSLRequest answered N, then an authentication request): hex expects consume the bytes they match", async () => {
    const authOk = Uint8Array.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
    using server = peer(null, [["N"], [authOk]]);
    const steps =
      'steps = [{ send_hex = "00000008 04d2162f" }, { expect_hex = "4e" }, { send_hex = "00000008 00030000" }, { expect_hex = "52 00000008 00000000" }]';
    expect(await verdict(server.port, steps)).toEqual(UP);
  });
});
