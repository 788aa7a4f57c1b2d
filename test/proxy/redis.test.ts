/** End to end with a real redis-server behind the forwarder, driven by redis-cli, redis-benchmark and raw RESP. */
import { expect, test } from "bun:test";
import { dial, hasCommand, MiB, patternBytes, run, startRedis, waitFor } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";

const hasRedis = hasCommand("redis-server") && hasCommand("redis-cli") && hasCommand("redis-benchmark");
if (!hasRedis) console.warn("skipping Redis tests: redis-server, redis-cli or redis-benchmark is not installed");

/** One RESP command as bytes. */
function resp(...args: (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === "string" ? Buffer.from(arg) : Buffer.from(arg);
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

test.skipIf(!hasRedis)(
  "answers redis-cli ping with PONG through the forwarder",
  async () => {
    await using redis = await startRedis();
    await using fwd = await startForward({ to: `127.0.0.1:${redis.port}` });
    const { code, stdout } = await run(["redis-cli", "-p", String(fwd.port), "ping"]);
    expect(code).toBe(0);
    expect(stdout).toBe("PONG\n");
    await waitFor(() => fwd.stats().totalSessions === 1 && fwd.stats().activeSessions === 0, 5000, "the session to close");
    expect(fwd.stats().bytesDown).toBe("+PONG\r\n".length);
  },
  20_000,
);

test.skipIf(!hasRedis)(
  "stores and returns a 1 MiB value byte for byte",
  async () => {
    await using redis = await startRedis();
    await using fwd = await startForward({ to: `127.0.0.1:${redis.port}` });
    const value = patternBytes(MiB, 424242);
    const reply = Buffer.concat([Buffer.from(`$${value.length}\r\n`), value, Buffer.from("\r\n")]);

    await using client = await dial(fwd.port);
    client.write(resp("SET", "big", value));
    await waitFor(() => client.bytesIn >= 5, 5000, "the SET reply");
    expect(client.text()).toBe("+OK\r\n");
    client.write(resp("GET", "big"));
    await waitFor(() => client.bytesIn >= 5 + reply.length, 10_000, "the GET reply");
    expect(client.received().subarray(5).equals(reply)).toBe(true);

    // What the forwarder stored is what redis holds.
    const { stdout } = await run(["redis-cli", "-p", String(redis.port), "strlen", "big"]);
    expect(stdout).toBe(`${MiB}\n`);
    await using direct = await dial(redis.port);
    direct.write(resp("GET", "big"));
    await waitFor(() => direct.bytesIn >= reply.length, 10_000, "the direct GET reply");
    expect(direct.received().equals(reply)).toBe(true);
  },
  20_000,
);

test.skipIf(!hasRedis)(
  "runs redis-benchmark ping, set and get through the forwarder",
  async () => {
    await using redis = await startRedis();
    await using fwd = await startForward({ to: `127.0.0.1:${redis.port}` });
    const { code, stdout, stderr } = await run(["redis-benchmark", "-p", String(fwd.port), "-q", "-n", "2000", "-c", "20", "-t", "ping,set,get"], 60_000);
    expect(code).toBe(0);
    expect(stderr).not.toMatch(/error/i);
    // -q prints progress with \r; keep each line's last frame.
    const results = stdout
      .split("\n")
      .map((line) => line.split("\r").at(-1)!.trim())
      .filter((line) => line !== "");
    for (const name of ["PING_INLINE", "PING_MBULK", "SET", "GET"]) {
      const line = results.find((candidate) => candidate.startsWith(`${name}: `));
      expect(line, `a ${name} result in:\n${stdout}`).toBeDefined();
      const rps = Number(/^\S+: ([\d.]+) requests per second/.exec(line!)?.[1]);
      expect(rps).toBeGreaterThan(0);
    }
    expect(fwd.stats()).toMatchObject({ connectFailures: 0, droppedBytes: 0 });
    expect(fwd.stats().totalSessions).toBeGreaterThanOrEqual(20);
  },
  90_000,
);
