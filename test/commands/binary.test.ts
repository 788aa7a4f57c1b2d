/** The compiled binary (`bun run build` → dist/tcprouter) starts, forwards, and stops like the script. */
import { beforeAll, expect, test } from "bun:test";
import { dial, echo, hasCommand, HOST, listen, ROOT, run, spawn, startRedis, waitFor } from "../helpers/net.ts";

const BINARY = `${ROOT}dist/tcprouter`;

beforeAll(async () => {
  const build = await run([process.execPath, "run", "build"], 120_000);
  if (build.code !== 0) throw new Error(`bun run build failed (${build.code}):\n${build.stdout}${build.stderr}`);
}, 130_000);

test("prints its version and usage", async () => {
  const version = await run([BINARY, "--version"]);
  expect(version.code).toBe(0);
  expect(version.stdout.trim()).toBe((await Bun.file(`${ROOT}package.json`).json()).version);
  const help = await run([BINARY, "--help"]);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain("--to=<to>");
}, 20_000);

test("exits 1 with one line on stderr when --to is missing", async () => {
  const { code, stderr } = await run([BINARY, "--listen", `${HOST}:0`]);
  expect(code).toBe(1);
  expect(stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(stderr).toMatch(/ERROR --to is required/);
}, 20_000);

test("forwards an echo session, then exits 0 on SIGTERM", async () => {
  await using upstream = listen(echo);
  await using binary = spawn([BINARY, "--listen", `${HOST}:0`, "--to", upstream.address]);
  const [, port] = await binary.stderrMatch(/listening on 127\.0\.0\.1:(\d+) → /);

  await using client = await dial(Number(port));
  client.write("compiled\n");
  await waitFor(() => client.bytesIn === 9, 5000, "the echo");
  expect(client.text()).toBe("compiled\n");
  client.shutdown();
  await waitFor(() => client.closed, 5000, "the session to close");

  binary.proc.kill("SIGTERM");
  expect(await binary.exited()).toBe(0);
  expect(binary.stderrText).toMatch(/stopped after \d+ ms: 0 drained, 0 closed at the deadline; 1 sessions, 9 B up, 9 B down/);
}, 20_000);

const hasRedis = hasCommand("redis-server") && hasCommand("redis-cli");
if (!hasRedis) console.warn("skipping the compiled binary's Redis test: redis-server or redis-cli is not installed");

test.skipIf(!hasRedis)(
  "forwards redis-cli to a real redis-server",
  async () => {
    await using redis = await startRedis();
    await using binary = spawn([BINARY, "--listen", `${HOST}:0`, "--to", `${HOST}:${redis.port}`]);
    const [, port] = await binary.stderrMatch(/listening on 127\.0\.0\.1:(\d+) → /);

    expect((await run(["redis-cli", "-p", port!, "ping"])).stdout).toBe("PONG\n");
    expect((await run(["redis-cli", "-p", port!, "set", "compiled", "yes"])).stdout).toBe("OK\n");
    expect((await run(["redis-cli", "-p", String(redis.port), "get", "compiled"])).stdout).toBe("yes\n");
  },
  20_000,
);
