/** --admin with --workers 2: the supervisor serves the admin endpoints, merged from every worker's. */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mergeMetrics } from "../../src/workers/admin.ts";
import type { MergedStatus } from "../../src/workers/admin.ts";
import { workerAdminPath } from "../../src/workers/admin.ts";
import { dial, echo, freePort, HOST, listen, spawnCli, waitFor } from "../helpers/net.ts";
import { parse, promtool, promtoolCheck, scrape } from "../helpers/prometheus.ts";

async function roundTrip(port: number, text: string): Promise<void> {
  const peer = await dial(port);
  peer.write(text);
  await waitFor(() => peer.bytesIn === text.length, 10_000, "the echo");
  peer.shutdown();
  await waitFor(() => peer.closed, 10_000, "the session to end");
}

test("merges /metrics and /status of two workers; /readyz is ready; SIGTERM exits 0", async () => {
  await using upstream = listen(echo);
  const port = freePort();
  const adminPort = freePort();
  await using supervisor = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:${upstream.port}`, "--workers", "2", "--admin", `${HOST}:${adminPort}`]);
  await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
  await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
  const admin = `http://${HOST}:${adminPort}/`;
  await waitFor(async () => (await fetch(`${admin}readyz`).catch(() => null))?.status === 200, 10_000, "/readyz 200");

  let sent = 0;
  for (let i = 0; i < 40; i++) {
    const text = `hello ${i}`;
    await roundTrip(port, text);
    sent += text.length;
  }

  let metrics = (await scrape(`${admin}metrics`)).metrics;
  await waitFor(
    async () => {
      metrics = (await scrape(`${admin}metrics`)).metrics;
      return metrics.all("tcprouter_sessions_total", {}, false).reduce((sum, s) => sum + s.value, 0) === 40;
    },
    10_000,
    "40 sessions in /metrics",
  );
  const sessions = metrics.all("tcprouter_sessions_total", {}, false);
  expect(new Set(sessions.map((s) => s.labels.worker))).toEqual(new Set(["1", "2"]));
  const up = metrics.all("tcprouter_bytes_total", { direction: "up" }, false).reduce((sum, s) => sum + s.value, 0);
  expect(up).toBe(sent);
  expect(metrics.get("tcprouter_workers", { state: "running" })).toBe(2);
  expect(metrics.get("tcprouter_worker_restarts_total")).toBe(0);
  expect(metrics.get("tcprouter_workers_unreachable")).toBe(0);
  const { text } = await scrape(`${admin}metrics`);
  expect(text.match(/^# TYPE tcprouter_sessions_total /gm)).toHaveLength(1);
  if (promtool !== null) expect(await promtoolCheck(text)).toBe("");

  const status = (await (await fetch(`${admin}status?history`)).json()) as MergedStatus;
  expect(status.totals.totalSessions).toBe(40);
  expect(status.totals.bytesUp).toBe(sent);
  expect(status.listeners).toHaveLength(1);
  expect(status.listeners[0]!.accepted).toBe(40);
  expect(status.backends[0]!.targets[0]!.sessions).toBe(40);
  expect(status.workers.map((w) => w.worker)).toEqual([1, 2]);
  expect(status.workers.reduce((sum, w) => sum + w.status.totals.totalSessions, 0)).toBe(40);
  expect([status.ready, status.draining, status.workersRunning, status.workersUnreachable]).toEqual([true, false, 2, 0]);
  expect(Array.isArray(status.history)).toBe(true);
  expect((await fetch(`${admin}healthz`)).status).toBe(200);
  expect((await fetch(`${admin}readyz`)).status).toBe(200);
  expect((await fetch(admin)).headers.get("content-type")).toBe("text/html; charset=utf-8");
  for (const n of [1, 2]) expect(existsSync(workerAdminPath(supervisor.proc.pid, n))).toBe(true);

  await using held = await dial(port);
  held.write("x");
  await waitFor(() => held.bytesIn === 1, 10_000, "the echo");
  supervisor.proc.kill("SIGTERM");
  await supervisor.stderrMatch(/SIGTERM: stopping 2 workers/, 10_000);
  expect((await fetch(`${admin}readyz`)).status).toBe(503); // the held session keeps a worker draining
  expect((await fetch(`${admin}healthz`)).status).toBe(200);
  held.shutdown();
  expect(await supervisor.exited(15_000)).toBe(0);
  for (const n of [1, 2]) expect(existsSync(workerAdminPath(supervisor.proc.pid, n))).toBe(false);
}, 60_000);

test("mergeMetrics: one HELP/TYPE per family, every worker's samples contiguous under it", () => {
  const one = '# HELP a_total A.\n# TYPE a_total counter\na_total{listener="x"} 1\n# HELP b B.\n# TYPE b gauge\nb 2\n';
  const two = '# HELP a_total A.\n# TYPE a_total counter\na_total{listener="x"} 3\n# HELP b B.\n# TYPE b gauge\nb 4\n';
  const text = mergeMetrics([
    { worker: 1, text: one },
    { worker: 2, text: two },
  ]);
  expect(text).toBe(
    '# HELP a_total A.\n# TYPE a_total counter\na_total{worker="1",listener="x"} 1\na_total{worker="2",listener="x"} 3\n' +
      '# HELP b B.\n# TYPE b gauge\nb{worker="1"} 2\nb{worker="2"} 4\n',
  );
  expect(parse(text).get("b", { worker: "2" })).toBe(4);
});
