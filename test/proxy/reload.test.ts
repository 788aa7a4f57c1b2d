/** Reload: a new config replaces listeners, backends and targets without dropping a session. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { createRouter } from "../../src/proxy/create-router.ts";
import { captureLogger, dial, echo, freePort, HOST, listen, spawnCli, waitFor, type Peer, exchange } from "../helpers/net.ts";

function toml(listeners: { port: number }[], targets: number[]): string {
  return [
    ...listeners.map((l, i) => `[[listeners]]\nname = "l${i}"\nlisten = "${HOST}:${l.port}"\nbackend = "app"\n`),
    `[backends.app]\nretries = 0\ntargets = [${targets.map((port) => `"${HOST}:${port}"`).join(", ")}]\n`,
  ].join("\n");
}

test("reloads 20 times under a client loop without a failed connection or a broken session", async () => {
  await using a = listen(echo);
  await using b = listen(echo);
  await using c = listen(echo);
  const main = freePort();
  const extra = freePort();
  const log = captureLogger();
  const router = await createRouter(parseConfig(toml([{ port: main }], [a.port, b.port]), "toml"), { logger: log.logger });
  const long: Peer[] = [];
  try {
    for (let i = 0; i < 5; i++) long.push(await dial(main));
    let stop = false;
    let failures = 0;
    let completed = 0;
    const loop = async (worker: number) => {
      for (let i = 0; !stop && i < 100_000; i++) {
        try {
          await exchange(main, `worker ${worker} message ${i}`);
          completed++;
        } catch (error) {
          failures++;
          log.lines.push(`client error: ${(error as Error).message}`);
        }
      }
    };
    const loops = [0, 1, 2, 3].map(loop);
    const sets = [[a.port, b.port], [b.port, c.port], [c.port], [a.port, c.port], [a.port, b.port, c.port]];
    for (let round = 1; round <= 20; round++) {
      await waitFor(() => completed >= round * 5, 10_000, "client traffic between reloads");
      const listeners = round % 2 === 1 ? [{ port: main }, { port: extra }] : [{ port: main }];
      const summary = router.reload(parseConfig(toml(listeners, sets[round % sets.length]!), "toml"));
      expect(summary.kept).toEqual([`${HOST}:${main}`]);
      if (round % 2 === 1) await exchange(extra, `extra ${round}`); // the added listener answers at once
      for (const [i, peer] of long.entries()) {
        const text = `long ${i} round ${round};`;
        const before = peer.bytesIn;
        peer.write(text);
        await waitFor(() => peer.bytesIn === before + text.length, 10_000, "a long session to echo");
      }
    }
    stop = true;
    await Promise.all(loops);
    expect(log.matching("client error")).toEqual([]);
    expect(failures).toBe(0);
    expect(completed).toBeGreaterThan(100);
    expect(router.stats()).toMatchObject({ connectFailures: 0, noTarget: 0, refused: 0 });
    expect(long.every((peer) => !peer.closed)).toBe(true);
    // The removed listener is closed: its port refuses connections.
    await expect(dial(extra)).rejects.toThrow();
  } finally {
    for (const peer of long) peer.terminate();
    await router.stop({ drainTimeout: 0 });
  }
}, 60_000);

test("keeps the health state of targets that survive a reload", async () => {
  await using live = listen(echo);
  const dead = freePort();
  const port = freePort();
  const config = (targets: number[]) =>
    parseConfig(
      `[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "app"\n[backends.app]\ntargets = [${targets.map((t) => `"${HOST}:${t}"`).join(", ")}]\n` +
        `[backends.app.health]\ninterval = "50ms"\ntimeout = "40ms"\nrise = 2\nfall = 1\n`,
      "toml",
    );
  const router = await createRouter(config([live.port, dead]), { logger: captureLogger().logger });
  try {
    const state = () => router.backends().get("app")!;
    await waitFor(() => state().find((t) => t.key === `${HOST}:${dead}`)?.healthy === false, 5000, "the dead target to be marked down");
    const deadState = state().find((t) => t.key === `${HOST}:${dead}`)!;
    router.reload(config([dead, live.port]));
    expect(state().find((t) => t.key === `${HOST}:${dead}`)).toBe(deadState); // the same object: state and counters kept
    expect(deadState.healthy).toBe(false);
    for (let i = 0; i < 10; i++) await exchange(port, `after reload ${i}`); // never sent to the down target
    expect(deadState.sessions).toBe(0);
  } finally {
    await router.stop({ drainTimeout: 0 });
  }
});

test("changes nothing when a new listener cannot be bound", async () => {
  await using upstream = listen(echo);
  await using taken = listen(echo);
  const port = freePort();
  const router = await createRouter(parseConfig(toml([{ port }], [upstream.port]), "toml"), { logger: captureLogger().logger });
  try {
    expect(() => router.reload(parseConfig(toml([{ port }, { port: taken.port }], [upstream.port]), "toml"))).toThrow("address already in use");
    expect(router.listeners.map((l) => l.port)).toEqual([port]);
    await exchange(port, "still serving");
  } finally {
    await router.stop({ drainTimeout: 0 });
  }
});

test("SIGHUP reloads the config file, and an invalid file keeps the current config", async () => {
  await using upstream = listen(echo);
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-reload-"));
  await using _dir = { [Symbol.asyncDispose]: async () => rmSync(dir, { recursive: true, force: true }) };
  const file = join(dir, "tcprouter.toml");
  const [first, second] = [freePort(), freePort()];
  writeFileSync(file, toml([{ port: first }], [upstream.port]));
  await using child = spawnCli(["--config", file]);
  await child.stderrMatch(new RegExp(`listening on ${HOST}:${first}`));
  await exchange(first, "before");

  writeFileSync(file, toml([{ port: first }, { port: second }], [upstream.port]));
  child.proc.kill("SIGHUP");
  await child.stderrMatch(/SIGHUP: reloaded .*opened/);
  await exchange(second, "added");
  await exchange(first, "kept");

  writeFileSync(file, `${toml([{ port: first }], [upstream.port])}\n[backends.extra]\ntargets = []\n`);
  child.proc.kill("SIGHUP");
  await child.stderrMatch(/reload failed; the current config keeps serving/);
  expect(child.stderrText).toContain("backends.extra.targets");
  await exchange(second, "still there");

  child.proc.kill("SIGTERM");
  expect(await child.exited()).toBe(0);
});
