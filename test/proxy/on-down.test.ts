/** on_down = "close-sessions" and on_up = "close-backup-sessions" with plain TCP targets; a reload keeps a Sentinel watch and its primary. */
import { afterEach, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { echo, freePort, listen, waitFor, type Server } from "../helpers/net.ts";
import { fakeSentinel, type FakeState } from "../helpers/replication.ts";
import { startRouter } from "../helpers/router.ts";
import { statusOf } from "../../src/backend/sources/source.ts";

const servers: Server[] = [];
const fakes: { stop(closeActive: boolean): void }[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
  for (const fake of fakes.splice(0)) fake.stop(true);
});

async function hold(port: number) {
  const state = { closed: false };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data() {},
      close() {
        state.closed = true;
      },
      error() {},
    },
  });
  return Object.assign(state, { socket });
}

test("on_up = close-backup-sessions: sessions on the backup are closed when the primary comes back", async () => {
  const primaryPort = freePort();
  let primary = listen(echo, { port: primaryPort });
  const backup = listen(echo);
  servers.push(backup);
  await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "b"
[backends.b]
targets = ["127.0.0.1:${primaryPort}", { address = "${backup.address}", backup = true }]
[backends.b.health]
interval = "50ms"
rise = 1
fall = 1
on_up = "close-backup-sessions"
`);
  const p = router.target(primaryPort, "b");
  await primary.stop();
  await waitFor(() => !p.healthy, 2000, "the primary to be marked down");
  const onBackup = await hold(router.port);
  // Not backup.peers: the backup's health probes are peers of its echo server too.
  const onBackupTarget = router.target(backup.port, "b");
  await waitFor(() => onBackupTarget.active === 1, 2000, "the session on the backup");
  primary = listen(echo, { port: primaryPort });
  servers.push(primary);
  await waitFor(() => onBackup.closed, 2000, "the backup session to be closed");
  expect(router.matching(`closed 1 session on ${backup.address}: primary 127.0.0.1:${primaryPort} is up`)).toHaveLength(1);
  expect(router.view.stats().targetDown).toBe(1);
});

test("on_down = none (the default) leaves sessions on a target marked down open", async () => {
  const a = listen(echo);
  servers.push(a);
  // The echo server answers "x" to "x", never "y": the target passes no check and goes down after fall.
  await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "b"
[backends.b]
targets = ["${a.address}"]
[backends.b.health]
interval = "100ms"
timeout = "50ms"
fall = 5
steps = [{ send = "x" }, { expect = "y" }]
`);
  const kept = await hold(router.port);
  const t = router.target(a.port, "b");
  expect(t.healthy).toBe(true);
  await waitFor(() => !t.healthy, 3000, "the target to be marked down");
  await Bun.sleep(100);
  expect(kept.closed).toBe(false);
  expect(router.view.stats().targetDown).toBe(0);
  kept.socket.terminate();
});

test("a reload that keeps the sentinel settings keeps the watch and its primary; one without sentinel stops it", async () => {
  const a = listen(echo);
  const b = listen(echo);
  servers.push(a, b);
  const states: FakeState[] = [0, 1, 2].map(() => ({ master: a.port, subscribers: [], asked: 0 }));
  const ports = states.map((state) => fakeSentinel(state, fakes));
  const toml = `[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
sentinel = { master = "mymaster", sentinels = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}], poll_interval = "1m" }
`;
  await using router = await startRouter(toml);
  await waitFor(() => states.every((s) => s.subscribers.length === 1), 3000, "subscriptions");
  const before = states.map((s) => s.asked);
  router.reload(parseConfig(toml, "toml"));
  expect(
    router
      .backends()
      .get("redis")!
      .map((t) => t.key),
  ).toEqual([`127.0.0.1:${a.port}`]);
  await Bun.sleep(100);
  expect(states.map((s) => s.subscribers.length)).toEqual([1, 1, 1]);
  expect(states.map((s) => s.asked)).toEqual(before);
  router.reload(parseConfig(`[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\ntargets = ["${b.address}"]\n`, "toml"));
  await waitFor(() => states.every((s) => s.subscribers.length === 0), 3000, "the subscriptions to be closed");
  expect(statusOf(router.view.sources, "redis").length).toBe(0);
});
