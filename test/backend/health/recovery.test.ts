/** Passive ejection (max_fails within fail_timeout, nginx's semantics) and slow_start. */
import { describe, expect, test } from "bun:test";
import type { TargetState } from "../../../src/backend/backend.ts";
import { Ejector, SLOW_START_FLOOR, SlowStart } from "../../../src/backend/health/recovery.ts";
import { captureLogger, echo, freePort, listen, waitFor } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";

function target(port: number, weight = 4): TargetState {
  const key = `127.0.0.1:${port}`;
  return {
    address: { kind: "tcp", host: "127.0.0.1", port },
    key,
    name: key,
    weight,
    configuredWeight: weight,
    state: "ready",
    enabled: true,
    maxConnections: 0,
    backup: false,
    healthy: true,
    active: 0,
    sessions: 0,
    connectFailures: 0,
  };
}

describe("Ejector", () => {
  test("max_fails failures within fail_timeout eject for fail_timeout; spread-out failures do not", async () => {
    const { logger, lines } = captureLogger(3);
    const back: TargetState[] = [];
    const ejector = new Ejector("b", 3, 100, logger, (t) => back.push(t));
    const t = target(1);
    ejector.failed(t, 0);
    ejector.failed(t, 60);
    ejector.failed(t, 120); // the window of the first ended at 100: a new one starts here
    expect(t.healthy).toBe(true);
    ejector.failed(t, 130);
    ejector.failed(t, 140);
    expect(t.healthy).toBe(false);
    expect(lines).toEqual(["info backend b: target 127.0.0.1:1 is down for 100 ms (3 failed connects within fail_timeout)"]);
    await waitFor(() => t.healthy, 1000, "the ejection to end");
    expect(back).toEqual([t]);
    ejector.stop();
  });

  test("max_fails = 0 never ejects", () => {
    const ejector = new Ejector("b", 0, 100, captureLogger().logger, () => {});
    const t = target(1);
    for (let i = 0; i < 10; i++) ejector.failed(t, i);
    expect(t.healthy).toBe(true);
  });
});

describe("SlowStart", () => {
  test("ramps the weight linearly from the floor to all of it, then stops", () => {
    const slow = new SlowStart(1000);
    const t = target(1, 4);
    slow.start(t, 0);
    expect(t.weight).toBe(4 * SLOW_START_FLOOR);
    expect(t.slowStartUntil).toBe(1000);
    slow.tick(500);
    expect(t.weight).toBe(2);
    slow.tick(1000);
    expect(t.weight).toBe(4);
    expect(t.slowStartUntil).toBe(0);
    expect(slow.fullWeight(t)).toBeNull();
    slow.stop();
  });

  test("a target that comes up again mid-ramp ramps to its full weight, not to the ramped one", () => {
    const slow = new SlowStart(1000);
    const t = target(1, 4);
    slow.start(t, 0);
    slow.tick(500);
    slow.start(t, 600);
    slow.tick(1600);
    expect(t.weight).toBe(4);
    slow.stop();
  });

  test("off (0) leaves the weight alone; cancel keeps an operator's weight", () => {
    const off = new SlowStart(0);
    const t = target(1, 4);
    off.start(t);
    expect(t.weight).toBe(4);
    const slow = new SlowStart(1000);
    slow.start(t, 0);
    slow.cancel(t);
    t.weight = 7;
    slow.tick(2000);
    expect(t.weight).toBe(7);
    slow.stop();
  });
});

describe("through the router", () => {
  test("without active checks, a refusing target is ejected after max_fails and tried again after fail_timeout", async () => {
    await using good = listen(echo);
    const refusing = freePort();
    await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "b"
[backends.b]
targets = ["127.0.0.1:${refusing}", "${good.address}"]
max_fails = 2
fail_timeout = "300ms"
`);
    const bad = router.target(refusing, "b");
    for (let i = 0; i < 6; i++) {
      const client = await Bun.connect({ hostname: "127.0.0.1", port: router.port, socket: { data() {}, error() {} } });
      await waitFor(() => router.view.sessions.size === 1, 2000, "the session");
      client.end();
      await waitFor(() => router.view.sessions.size === 0, 2000, "the session to end");
    }
    expect(bad.connectFailures).toBe(2);
    expect(bad.healthy).toBe(false);
    expect(bad.ejectedUntil).toBeGreaterThan(Date.now() - 300);
    expect(router.matching(`target 127.0.0.1:${refusing} is down for 300 ms (2 failed connects within fail_timeout)`)).toHaveLength(1);
    await waitFor(() => bad.healthy, 2000, "the ejection to end");
    expect(router.matching(`target 127.0.0.1:${refusing} is tried again`)).toHaveLength(1);
  });

  test("max_fails with active checks is a config error", async () => {
    await expect(
      startRouter('[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "b"\n[backends.b]\ntargets = ["127.0.0.1:1"]\nmax_fails = 2\nhealth = {}\n'),
    ).rejects.toThrow("backends.b.max_fails: not with health (with active checks a failed connect counts toward fall)");
  });

  test("slow_start ramps a target's weight after a check marks it up", async () => {
    const port = freePort();
    await using router = await startRouter(`[[listeners]]
listen = "127.0.0.1:0"
backend = "b"
[backends.b]
targets = [{ address = "127.0.0.1:${port}", weight = 10 }]
slow_start = "600ms"
health = { interval = "50ms", rise = 1, fall = 1, init = "down" }
`);
    const t = router.target(port, "b");
    await Bun.sleep(120);
    expect(t.healthy).toBe(false);
    await using server = listen(echo, { port });
    await waitFor(() => t.healthy, 2000, "the target to come up");
    expect(t.weight).toBeLessThan(10);
    expect(t.slowStartUntil).toBeGreaterThan(Date.now());
    await waitFor(() => t.weight === 10, 2000, "the ramp to end");
    void server;
  });
});
