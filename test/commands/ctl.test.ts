/** `tcprouter ctl` against a spawned `tcprouter serve`: output, exit codes, one-line errors; serve's token flags. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { targetsTable } from "../../src/commands/ctl.ts";
import { dial, echo, exchange, freePort, HOST, listen, spawn, spawnCli, waitFor, type Child, type Server } from "../helpers/net.ts";

const CLI = [process.execPath, "run", "src/cli.ts"];
const TOKEN = "ctl-test-token-42";

/** `tcprouter ctl ...args` to completion, with these environment variables (the token one is cleared unless given). */
async function ctl(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  await using child = spawn([...CLI, "ctl", ...args], { TCPROUTER_ADMIN_TOKEN: "", ...env });
  const code = await child.exited(15_000);
  return { code, stdout: child.stdoutText, stderr: child.stderrText };
}

/** stderr is one ERROR line whose message is `message`, with no stack trace. */
function oneError(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at |Error:/);
  return lines[0]!.replace(/^\S+ ERROR /, "");
}

let dir: string;
let a: Server;
let b: Server;
let port: number;
let adminPort: number;
let serve: Child;
let admin: string;
let tokenFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tcprouter-ctl-"));
  tokenFile = join(dir, "admin.token");
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  a = listen(echo);
  b = listen(echo);
  port = freePort();
  adminPort = freePort();
  admin = `${HOST}:${adminPort}`;
  const config = join(dir, "router.toml");
  writeFileSync(
    config,
    `[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "redis"\n[backends.redis]\nretries = 0\ntargets = ["${a.address}", "${b.address}"]\n` +
      `[admin]\nlisten = "${admin}"\ntoken_file = "admin.token"\n`,
  );
  serve = spawnCli(["--config", config]);
  await serve.stderrMatch(/admin on http:\/\/127\.0\.0\.1:\d+\/ \(.*\/api: changes with the token\)/, 15_000);
});

afterAll(async () => {
  await serve[Symbol.asyncDispose]();
  await a.stop();
  await b.stop();
  rmSync(dir, { recursive: true, force: true });
});

const row = (server: Server, state: string, weight: number) =>
  new RegExp(`^redis\\s+${server.address.replace(/\./g, "\\.")}\\s+${state}\\s+up\\s+${weight}\\s`, "m");

describe("changes through a spawned serve", () => {
  test("targets prints a table; drain, maint, ready and weight print one line each and the audit log names them", async () => {
    const listed = await ctl(["targets", "--admin", admin]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split("\n")[0]).toMatch(/^BACKEND\s+TARGET\s+STATE\s+HEALTH\s+WEIGHT\s+ACTIVE\s+SESSIONS$/);
    expect(listed.stdout).toMatch(row(a, "ready", 1));

    const steps: [string[], string][] = [
      [["drain", "redis", a.address], `redis/${a.address}: ready → drain\n`],
      [["maint", "redis", a.address, "--close"], `redis/${a.address}: drain → maint, closed 0 sessions\n`],
      [["weight", "redis", b.address, "3"], `redis/${b.address}: weight 1 → 3\n`],
      [["ready", "redis", a.address], `redis/${a.address}: maint → ready\n`],
      [["weight", "redis", b.address, "1"], `redis/${b.address}: weight 3 → 1\n`],
    ];
    for (const [args, out] of steps) {
      const done = await ctl([...args, "--admin", admin, "--token-file", tokenFile]);
      expect([args.join(" "), done.code, done.stdout, done.stderr]).toEqual([args.join(" "), 0, out, ""]);
    }
    expect(serve.stderrText).toMatch(new RegExp(`\\[admin\\] 127\\.0\\.0\\.1:\\d+ set redis/${a.address} drain \\(was ready\\)`));
    expect(serve.stderrText).toMatch(new RegExp(`\\[admin\\] 127\\.0\\.0\\.1:\\d+ set redis/${b.address} weight 3 \\(was 1\\)`));

    // A SIGHUP reload keeps the state of a target that stays.
    expect((await ctl(["drain", "redis", a.address, "--admin", admin, "--token-file", tokenFile])).code).toBe(0);
    serve.proc.kill("SIGHUP");
    await serve.stderrMatch(/SIGHUP: reloaded/, 10_000);
    expect((await ctl(["targets", "--admin", admin])).stdout).toMatch(row(a, "drain", 1));
    expect((await ctl(["ready", "redis", a.address, "--admin", admin, "--token-file", tokenFile])).code).toBe(0);

    const json = await ctl(["targets", "redis", "--admin", admin, "--json"]);
    expect(json.code).toBe(0);
    const answer = JSON.parse(json.stdout) as { name: string; targets: { target: string; state: string }[] };
    expect(answer.name).toBe("redis");
    expect(answer.targets.map((t) => [t.target, t.state])).toEqual([
      [a.address, "ready"],
      [b.address, "ready"],
    ]);
  }, 60_000);

  test("drain --wait under a client loop: no failed session; exit 0 once the held session ends, exit 1 when the wait runs out", async () => {
    const env = { TCPROUTER_ADMIN_TOKEN: TOKEN };
    expect((await ctl(["maint", "redis", b.address, "--admin", admin], env)).code).toBe(0);
    const held = await dial(port);
    held.write("held");
    await waitFor(() => held.bytesIn === 4, 5000, "the held session to echo");
    expect((await ctl(["ready", "redis", b.address, "--admin", admin], env)).code).toBe(0);

    let stop = false;
    const failures: string[] = [];
    let completed = 0;
    const loop = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await exchange(port, `loop ${i}`);
          completed++;
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    try {
      await waitFor(() => completed >= 20, 10_000, "client traffic");
      const short = await ctl(["drain", "redis", a.address, "--wait", "300ms", "--admin", admin], env);
      expect(short.code).toBe(1);
      expect(short.stdout).toMatch(new RegExp(`^redis/${a.address}: ready → drain, 1 session still open after \\d+ ms\\n$`));
      expect(oneError(short.stderr)).toBe(`redis/${a.address}: 1 session still open after the wait`);

      const waiting = ctl(["drain", "redis", a.address, "--wait", "20s", "--admin", admin], env);
      const before = completed;
      await waitFor(() => completed >= before + 30, 10_000, "client traffic during the drain");
      held.write("!");
      await waitFor(() => held.bytesIn === 5, 5000, "the held session to echo during the drain");
      held.shutdown();
      const long = await waiting;
      expect([long.code, long.stderr]).toEqual([0, ""]);
      expect(long.stdout).toMatch(new RegExp(`^redis/${a.address}: drain → drain, no session left after [\\d.]+ (ms|s)\\n$`));
    } finally {
      stop = true;
      await loop;
      await ctl(["ready", "redis", a.address, "--admin", admin], env);
    }
    expect(failures).toEqual([]);
  }, 60_000);
});

describe("errors are one line and exit 1", () => {
  test.each([
    ["no token", ["drain", "redis", "x"], {}, "the admin at ADMIN needs a token (401): give it with --token-file or $TCPROUTER_ADMIN_TOKEN"],
    [
      "a wrong token",
      ["drain", "redis", "x"],
      { TCPROUTER_ADMIN_TOKEN: "nope" },
      "the admin at ADMIN refused the token (401: wrong token); check --token-file or $TCPROUTER_ADMIN_TOKEN",
    ],
    ["an unknown backend", ["drain", "cache", "x"], { TCPROUTER_ADMIN_TOKEN: TOKEN }, 'unknown backend "cache" (backends: redis)'],
    ["an unknown target", ["maint", "redis", "10.0.0.9:1"], { TCPROUTER_ADMIN_TOKEN: TOKEN }, 'unknown target "10.0.0.9:1" in backend "redis" (targets: A, B)'],
    ["a weight out of range", ["weight", "redis", "A", "300"], { TCPROUTER_ADMIN_TOKEN: TOKEN }, "weight: expected a whole number from 0 to 256, got 300"],
    ["an unknown action", ["disable", "redis", "A"], {}, 'unknown action "disable" (use targets, drain, maint, ready, weight, upgrade)'],
    ["a change without a target", ["drain", "redis"], {}, "drain needs a backend and a target, e.g. tcprouter ctl drain redis 127.0.0.1:6380"],
    ["--close without maint", ["drain", "redis", "A", "--close"], {}, "--close: only with maint"],
    ["an unknown flag", ["targets", "--bogus"], {}, "unknown flag --bogus (see --help)"],
  ] as const)(
    "%s",
    async (_, args, env, message) => {
      const fill = (text: string) => text.replace("ADMIN", admin).replace("A, B", `${a.address}, ${b.address}`);
      const done = await ctl([...args.map((arg) => (arg === "A" ? a.address : arg)), "--admin", admin], env);
      expect(done.code).toBe(1);
      expect(done.stdout).toBe("");
      expect(oneError(done.stderr)).toBe(fill(message));
    },
    20_000,
  );

  test("an admin that cannot be reached, and an address that is not an admin listener", async () => {
    const refused = await ctl(["targets", "--admin", `${HOST}:1`]);
    expect([refused.code, oneError(refused.stderr)]).toEqual([1, `cannot reach the admin at ${HOST}:1: connection refused`]);
    const missing = await ctl(["targets", "--admin", `unix:${dir}/none.sock`]);
    expect(missing.code).toBe(1);
    expect(oneError(missing.stderr)).toStartWith(`cannot reach the admin at unix:${dir}/none.sock: `);
    const plain = await ctl(["targets", "--admin", `${HOST}:${port}`]); // the echo listener: not HTTP
    expect(plain.code).toBe(1);
    expect(oneError(plain.stderr)).toStartWith(`cannot reach the admin at ${HOST}:${port}: `);
  }, 30_000);

  test("a token file that cannot be read", async () => {
    const done = await ctl(["targets", "--admin", admin, "--token-file", join(dir, "nope")]);
    expect([done.code, oneError(done.stderr)]).toEqual([1, `--token-file: cannot read ${join(dir, "nope")}: no such file`]);
  });

  test("changes on an admin without a token answer 403 (serve with --admin and no token)", async () => {
    const noTokenAdmin = `${HOST}:${freePort()}`;
    await using other = spawn([...CLI, "--listen", `${HOST}:0`, "--to", a.address, "--admin", noTokenAdmin], { TCPROUTER_ADMIN_TOKEN: "" });
    await other.stderrMatch(/admin on .*\/api: read-only: no token/, 15_000);
    const done = await ctl(["drain", "default", a.address, "--admin", noTokenAdmin], { TCPROUTER_ADMIN_TOKEN: TOKEN });
    expect(done.code).toBe(1);
    expect(oneError(done.stderr)).toBe(
      `the admin at ${noTokenAdmin} refused (403): changes are off: no admin token is configured ([admin] token_file, --admin-token-file or TCPROUTER_ADMIN_TOKEN)`,
    );
    expect((await ctl(["targets", "--admin", noTokenAdmin])).code).toBe(0);
  }, 30_000);
});

describe("serve's token options", () => {
  test("--admin-token-file that cannot be read stops the start with one line", async () => {
    await using child = spawn([...CLI, "--listen", `${HOST}:0`, "--to", a.address, "--admin", `${HOST}:0`, "--admin-token-file", join(dir, "missing")]);
    expect(await child.exited(15_000)).toBe(1);
    expect(oneError(child.stderrText)).toBe(`--admin-token-file: cannot read ${join(dir, "missing")}: no such file`);
  }, 20_000);

  test("protect_reads without a token stops the start with one line, unless the admin is off", async () => {
    const config = join(dir, "protected.toml");
    writeFileSync(
      config,
      `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "redis"\n[backends.redis]\ntargets = ["${a.address}"]\n[admin]\nlisten = "${HOST}:0"\nprotect_reads = true\n`,
    );
    await using refused = spawn([...CLI, "--config", config], { TCPROUTER_ADMIN_TOKEN: "" });
    expect(await refused.exited(15_000)).toBe(1);
    expect(oneError(refused.stderrText)).toBe("admin.protect_reads: needs a token (admin.token_file or the TCPROUTER_ADMIN_TOKEN environment variable)");
    await using off = spawn([...CLI, "--config", config, "--admin", "off"], { TCPROUTER_ADMIN_TOKEN: "" });
    await off.stderrMatch(/listening on 127\.0\.0\.1:\d+/, 15_000);
  }, 30_000);

  test("--admin-token-file on a unix-socket admin: ctl reaches it over the socket", async () => {
    const socket = join(dir, "admin.sock");
    await using child = spawn([...CLI, "--listen", `${HOST}:0`, "--to", a.address, "--admin", `unix:${socket}`, "--admin-token-file", tokenFile]);
    await child.stderrMatch(/admin on unix:\/\/.*changes with the token/, 15_000);
    const done = await ctl(["weight", "default", a.address, "2", "--admin", `unix:${socket}`, "--token-file", tokenFile]);
    expect([done.code, done.stdout, done.stderr]).toEqual([0, `default/${a.address}: weight 1 → 2\n`, ""]);
    await waitFor(() => child.stderrText.includes(`[admin] unix set default/${a.address} weight 2 (was 1)`), 5000, "the audit line");
  }, 30_000);
});

test("targetsTable aligns the columns and adds NAME only when a name differs from its address", () => {
  const target = { target: "10.0.0.1:6379", name: "10.0.0.1:6379", state: "ready", health: "up", weight: 1, active: 0, sessions: 12 };
  expect(targetsTable([{ name: "redis", targets: [target, { ...target, target: "10.0.0.22:6379", name: "10.0.0.22:6379", state: "drain" }] }])).toBe(
    "BACKEND  TARGET          STATE  HEALTH  WEIGHT  ACTIVE  SESSIONS\n" +
      "redis    10.0.0.1:6379   ready  up      1       0       12\n" +
      "redis    10.0.0.22:6379  drain  up      1       0       12\n",
  );
  expect(targetsTable([{ name: "r", targets: [{ ...target, name: "redis.svc:6379" }] }]).split("\n")[0]).toMatch(/^BACKEND\s+TARGET\s+NAME\s+STATE/);
});
