/** /metrics: exact counter values after known traffic, read with real Prometheus parsers. */
import { describe, expect, test } from "bun:test";
import { startAdmin } from "../../src/observe/admin.ts";
import { parseConfig } from "../../src/config/load.ts";
import { CLOSE_REASONS } from "../../src/observe/metrics.ts";
import { escapeLabel, Histogram } from "../../src/observe/prometheus.ts";
import { forward, forwardConfig } from "../../src/proxy/forward.ts";
import { createRouter } from "../../src/proxy/create-router.ts";
import { captureLogger, dial, echo, freePort, HOST, listen, patternBytes, unacceptingListener, waitFor, type Peer } from "../helpers/net.ts";
import { parse, promtool, promtoolCheck, scrape } from "../helpers/prometheus.ts";

/** Sends `data`, waits for its echo, then half-closes and waits for the session to end. */
async function echoSession(port: number, data: Buffer): Promise<Peer> {
  const client = await dial(port);
  client.write(data);
  await waitFor(() => client.bytesIn >= data.length, 5000, `${data.length} bytes of echo`);
  client.shutdown();
  await waitFor(() => client.closed, 5000, "the session to end");
  return client;
}

describe("after known traffic, /metrics has the exact counts", () => {
  test("sessions, bytes each way, close reasons, durations, connect failures, refusals, target health", async () => {
    await using upstream = listen(echo);
    const dead = `${HOST}:${freePort()}`; // nothing listens: connects are refused
    const down = `${HOST}:${freePort()}`;
    const config = parseConfig(
      `[[listeners]]\nname = "main"\nlisten = "${HOST}:0"\nbackend = "echo"\n` +
        `[[listeners]]\nname = "small"\nlisten = "${HOST}:0"\nbackend = "echo"\nmax_connections = 1\n` +
        `[[listeners]]\nname = "nowhere"\nlisten = "${HOST}:0"\nbackend = "dead"\n` +
        `[backends.echo]\ntargets = ["${upstream.address}"]\n` +
        `[backends.dead]\nretries = 0\ntargets = ["${dead}"]\n` +
        `[backends.checked]\ntargets = ["${down}"]\n[backends.checked.health]\ninterval = "50ms"\ntimeout = "50ms"\nfall = 1\n`,
      "toml",
    );
    const log = captureLogger();
    const handle = await createRouter(config, { logger: log.logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: handle.view });
    try {
      const [main, small, nowhere] = handle.listeners.map((listener) => listener.port) as [number, number, number];
      const sizes = [1000, 20_000, 300_001];
      for (const [i, size] of sizes.entries()) await echoSession(main, patternBytes(size, i));

      // One session stays open on "small" (its limit), so the next connection is refused.
      await using held = await dial(small);
      held.write(patternBytes(100));
      await waitFor(() => held.bytesIn === 100, 5000, "the held session's echo");
      await using refused = await dial(small);
      await waitFor(() => refused.hungUp, 5000, "the refused connection to be closed");

      await using failed = await dial(nowhere);
      await waitFor(() => failed.hungUp, 5000, "the client of a refused connect to be closed");
      await waitFor(() => handle.view.sessions.size === 1, 5000, "all but the held session to end");
      await waitFor(() => handle.view.backends.get("checked")!.targets[0]!.healthy === false, 5000, "the health check to mark the target down");

      const { metrics, text, contentType } = await scrape(`${admin.url}metrics`);
      expect(contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
      const echoTarget = { backend: "echo", target: upstream.address };
      const total = sizes.reduce((a, b) => a + b, 0);

      expect(metrics.get("tcprouter_sessions_total", { listener: "main", ...echoTarget })).toBe(3);
      expect(metrics.get("tcprouter_bytes_total", { listener: "main", ...echoTarget, direction: "up" })).toBe(total);
      expect(metrics.get("tcprouter_bytes_total", { listener: "main", ...echoTarget, direction: "down" })).toBe(total);
      expect(metrics.get("tcprouter_sessions_closed_total", { listener: "main", reason: "client_fin" })).toBe(3);
      expect(metrics.all("tcprouter_sessions_closed_total", { listener: "main" }, false).reduce((sum, s) => sum + s.value, 0)).toBe(3);
      expect(metrics.get("tcprouter_sessions_active", { listener: "main" })).toBe(0);
      expect(metrics.get("tcprouter_session_duration_seconds_count", { listener: "main" })).toBe(3);
      expect(metrics.get("tcprouter_session_duration_seconds_bucket", { listener: "main", le: "+Inf" })).toBe(3);
      expect(metrics.get("tcprouter_session_duration_seconds_sum", { listener: "main" })).toBeGreaterThan(0);

      // The held session: open, counted, and its bytes so far are in the counters already.
      expect(metrics.get("tcprouter_sessions_active", { listener: "small" })).toBe(1);
      expect(metrics.get("tcprouter_sessions_total", { listener: "small", ...echoTarget })).toBe(1);
      expect(metrics.get("tcprouter_bytes_total", { listener: "small", ...echoTarget, direction: "up" })).toBe(100);
      expect(metrics.get("tcprouter_bytes_total", { listener: "small", ...echoTarget, direction: "down" })).toBe(100);
      expect(metrics.get("tcprouter_connections_refused_total", { listener: "small" })).toBe(1);
      expect(metrics.get("tcprouter_connections_refused_total", { listener: "main" })).toBe(0);
      expect(metrics.get("tcprouter_target_sessions_active", echoTarget)).toBe(1);

      // Connect latency: one observation per session that connected (3 on main, 1 on small).
      expect(metrics.get("tcprouter_connect_duration_seconds_count", echoTarget)).toBe(4);
      expect(metrics.get("tcprouter_connect_duration_seconds_bucket", { ...echoTarget, le: "10" })).toBe(4);

      // The refused connect: a failure on its target, a session closed as connect_failed, no session counted on the target.
      const deadTarget = { backend: "dead", target: dead };
      expect(metrics.get("tcprouter_connect_failures_total", { ...deadTarget, reason: "connect_failed" })).toBe(1);
      expect(metrics.get("tcprouter_connect_failures_total", { ...deadTarget, reason: "connect_timeout" })).toBe(0);
      expect(metrics.get("tcprouter_connect_failures_total", { ...echoTarget, reason: "connect_failed" })).toBe(0);
      expect(metrics.get("tcprouter_sessions_closed_total", { listener: "nowhere", reason: "connect_failed" })).toBe(1);
      expect(metrics.get("tcprouter_sessions_total", { listener: "nowhere", ...deadTarget })).toBe(0);
      expect(metrics.get("tcprouter_connect_duration_seconds_count", deadTarget)).toBe(0);

      expect(metrics.get("tcprouter_target_up", echoTarget)).toBe(1);
      expect(metrics.get("tcprouter_target_up", { backend: "checked", target: down })).toBe(0);
      expect(metrics.get("tcprouter_reloads_total")).toBe(0);
      expect(metrics.get("tcprouter_draining")).toBe(0);

      expect(metrics.get("process_resident_memory_bytes")).toBeGreaterThan(1024 * 1024);
      expect(metrics.get("process_cpu_seconds_total")).toBeGreaterThan(0);
      const started = metrics.get("process_start_time_seconds");
      expect(started).toBeLessThanOrEqual(Date.now() / 1000);
      expect(started).toBeGreaterThan(Date.now() / 1000 - 3600);

      expect(metrics.types.get("tcprouter_bytes_total")).toBe("counter");
      expect(metrics.types.get("tcprouter_sessions_active")).toBe("gauge");
      expect(metrics.types.get("tcprouter_connect_duration_seconds")).toBe("histogram");
      expect(metrics.types.get("tcprouter_session_duration_seconds")).toBe("histogram");
      if (promtool !== null) expect(await promtoolCheck(text)).toBe("");
    } finally {
      await admin.stop();
      await handle.stop({ drainTimeout: 0 });
    }
  }, 30_000);

  test("a connect timeout is counted as such, not as a refused connect", async () => {
    // A listener with backlog 0 and a full accept queue: the SYN is dropped, the connect hangs.
    await using target = await unacceptingListener();
    const fwd = await forward({ listen: `${HOST}:0`, to: target.address, connectTimeout: "200ms", logger: captureLogger().logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      await using client = await dial(fwd.port);
      await waitFor(() => client.hungUp, 5000, "the client to be closed");
      await waitFor(() => fwd.view.sessions.size === 0, 5000, "the session to end");
      const { metrics } = await scrape(`${admin.url}metrics`);
      const labels = { backend: "default", target: target.address };
      expect(metrics.get("tcprouter_connect_failures_total", { ...labels, reason: "connect_timeout" })).toBe(1);
      expect(metrics.get("tcprouter_connect_failures_total", { ...labels, reason: "connect_failed" })).toBe(0);
      expect(metrics.get("tcprouter_sessions_closed_total", { listener: `${HOST}:0`, reason: "connect_timeout" })).toBe(1);
    } finally {
      await admin.stop();
      await fwd.stop({ drainTimeout: 0 });
    }
  }, 20_000);

  // Since timed-out connects are retried, a session's close reason no longer tells which
  // attempts timed out: Session.connectFailed reports every attempt to the observers.
  test("a timed-out attempt that was retried on another target is counted as a timeout", async () => {
    await using hanging = await unacceptingListener();
    await using upstream = listen(echo);
    const config = parseConfig(
      `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\nconnect_timeout = "200ms"\n` +
        `[backends.b]\nbalance = "round-robin"\nretries = 1\ntargets = ["${hanging.address}", "${upstream.address}"]\n`,
      "toml",
    );
    const handle = await createRouter(config, { logger: captureLogger().logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: handle.view });
    try {
      const client = await echoSession(handle.listeners[0]!.port, patternBytes(10));
      expect(client.bytesIn).toBe(10);
      const { metrics } = await scrape(`${admin.url}metrics`);
      const labels = { backend: "b", target: hanging.address };
      expect(metrics.get("tcprouter_sessions_total", { listener: `${HOST}:0`, backend: "b", target: upstream.address })).toBe(1);
      expect(metrics.get("tcprouter_connect_failures_total", { ...labels, reason: "connect_failed" })).toBe(0);
      expect(metrics.get("tcprouter_connect_failures_total", { ...labels, reason: "connect_timeout" })).toBe(1);
    } finally {
      await admin.stop();
      await handle.stop({ drainTimeout: 0 });
    }
  }, 20_000);

  test("counters go on across a reload, and the reload is counted", async () => {
    await using upstream = listen(echo);
    const config = forwardConfig({ listen: `${HOST}:0`, to: upstream.address });
    const handle = await createRouter(config, { logger: captureLogger().logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: handle.view });
    try {
      const port = handle.listeners[0]!.port;
      await echoSession(port, patternBytes(10));
      handle.reload(forwardConfig({ listen: `${HOST}:0`, to: upstream.address }));
      await echoSession(port, patternBytes(20));
      await waitFor(() => handle.view.sessions.size === 0, 5000, "the sessions to end");
      const { metrics } = await scrape(`${admin.url}metrics`);
      const labels = { listener: `${HOST}:0`, backend: "default", target: upstream.address };
      expect(metrics.get("tcprouter_reloads_total")).toBe(1);
      expect(metrics.get("tcprouter_sessions_total", labels)).toBe(2);
      expect(metrics.get("tcprouter_bytes_total", { ...labels, direction: "up" })).toBe(30);
    } finally {
      await admin.stop();
      await handle.stop({ drainTimeout: 0 });
    }
  }, 15_000);

  test("a fresh router exposes every listener and target at zero", async () => {
    await using upstream = listen(echo);
    const handle = await createRouter(forwardConfig({ listen: `${HOST}:0`, to: upstream.address }), { logger: captureLogger().logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: handle.view });
    try {
      const { metrics } = await scrape(`${admin.url}metrics`);
      const labels = { listener: `${HOST}:0`, backend: "default", target: upstream.address };
      expect(metrics.get("tcprouter_sessions_total", labels)).toBe(0);
      expect(metrics.get("tcprouter_bytes_total", { ...labels, direction: "up" })).toBe(0);
      expect(metrics.get("tcprouter_session_duration_seconds_count", { listener: `${HOST}:0` })).toBe(0);
      expect(metrics.get("tcprouter_target_up", { backend: "default", target: upstream.address })).toBe(1);
      expect(metrics.all("tcprouter_sessions_closed_total", { listener: `${HOST}:0` }, false).map((s) => s.labels.reason)).toEqual([...CLOSE_REASONS]);
    } finally {
      await admin.stop();
      await handle.stop({ drainTimeout: 0 });
    }
  });
});

describe("the text format", () => {
  test("histogram buckets are cumulative and a value on a bound falls in that bucket (le is ≤)", () => {
    const histogram = new Histogram([0.1, 1, 10]);
    for (const value of [0.05, 0.1, 0.5, 1, 1, 20]) histogram.observe(value);
    expect([...histogram.counts]).toEqual([2, 3, 0, 1]);
    expect(histogram.count).toBe(6);
    expect(histogram.sum).toBeCloseTo(22.65, 10);
  });

  test.each([
    ["plain", "plain"],
    ['a"quote', 'a\\"quote'],
    ["back\\slash", "back\\\\slash"],
    ["new\nline", "new\\nline"],
    ["unix:/tmp/x y.sock", "unix:/tmp/x y.sock"],
  ])("label value %j is written as %j and parses back", (value, escaped) => {
    expect(escapeLabel(value)).toBe(escaped);
    const metrics = parse(`# TYPE x_total counter\nx_total{name="${escapeLabel(value)}"} 1\n`);
    expect(metrics.get("x_total", { name: value })).toBe(1);
  });

  // promtool is Prometheus's own parser and linter (Debian package prometheus; .ci/run installs it).
  test.skipIf(promtool === null)("the exposition after traffic passes promtool check metrics", async () => {
    await using upstream = listen(echo);
    const handle = await createRouter(forwardConfig({ listen: `${HOST}:0`, to: upstream.address }), { logger: captureLogger().logger });
    const admin = startAdmin({ listen: `${HOST}:0`, router: handle.view });
    try {
      await echoSession(handle.listeners[0]!.port, patternBytes(1000));
      const { text } = await scrape(`${admin.url}metrics`);
      expect(await promtoolCheck(text)).toBe("");
    } finally {
      await admin.stop();
      await handle.stop({ drainTimeout: 0 });
    }
  });
});
