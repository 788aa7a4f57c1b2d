/** The control API with --workers 2: the supervisor applies a change to every worker, reports each, and replays it to a restarted one. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MergedStatus } from "../../src/workers/admin.ts";
import type { MergedBackends, WorkerResult } from "../../src/workers/control.ts";
import { echo, exchange, freePort, HOST, listen, spawn, spawnCli, waitFor } from "../helpers/net.ts";

const TOKEN = "workers-token-7";

test("a change reaches both workers, each reports; the states survive a worker restart; errors and auth at the supervisor", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-workers-control-"));
  try {
    await using a = listen(echo);
    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
    const port = freePort();
    const adminPort = freePort();
    const admin = `http://${HOST}:${adminPort}`;
    await using supervisor = spawnCli([
      "--listen",
      `${HOST}:${port}`,
      "--to",
      a.address,
      "--workers",
      "2",
      "--admin",
      `${HOST}:${adminPort}`,
      "--admin-token-file",
      tokenFile,
    ]);
    await supervisor.stderrMatch(/\[worker 1\] listening/, 15_000);
    await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
    await waitFor(async () => (await fetch(`${admin}/readyz`).catch(() => null))?.status === 200, 10_000, "/readyz 200");
    const auth = { authorization: `Bearer ${TOKEN}` };
    const target = encodeURIComponent(a.address);
    const post = (path: string, body: unknown, headers: Record<string, string> = auth) =>
      fetch(`${admin}${path}`, { method: "POST", headers, body: JSON.stringify(body) });

    // At the supervisor: 401 without the token, before any worker is asked.
    const denied = await post(`/api/backends/default/targets/${target}/state`, { state: "drain" }, {});
    expect([denied.status, ((await denied.json()) as { error: string }).error]).toEqual([401, "missing bearer token (Authorization: Bearer …)"]);

    // weight 0 on both, each worker reports its own result.
    const weighted = await post(`/api/backends/default/targets/${target}/weight`, { weight: 0 });
    expect(weighted.status).toBe(200);
    const results = ((await weighted.json()) as { workers: WorkerResult[] }).workers;
    expect(results.map((r) => [r.worker, r.ok, r.status])).toEqual([
      [1, true, 200],
      [2, true, 200],
    ]);
    expect(results.map((r) => r.result)).toEqual([1, 2].map(() => ({ backend: "default", targets: [{ target: a.address, weight: 0, was: 1 }] })));
    for (let i = 0; i < 20; i++) await exchange(port, `no target ${i}`).catch(() => {}); // weight 0: nothing reaches a
    expect(a.peers).toHaveLength(0);
    await post(`/api/backends/default/targets/${target}/weight`, { weight: 1 });

    // ctl drain: one line per worker.
    await using ctl = spawn([
      process.execPath,
      "run",
      "src/cli.ts",
      "ctl",
      "drain",
      "default",
      a.address,
      "--admin",
      `${HOST}:${adminPort}`,
      "--token-file",
      tokenFile,
    ]);
    expect(await ctl.exited(15_000)).toBe(0);
    expect(ctl.stdoutText).toBe(`worker 1: default/${a.address}: ready → drain\nworker 2: default/${a.address}: ready → drain\n`);
    await waitFor(
      () => supervisor.stderrText.match(/\[worker \d:admin\] 127\.0\.0\.1:\d+ set default\/\S+ drain \(was ready\)/g)?.length === 2,
      5000,
      "two audit lines",
    );

    const merged = async () => (await (await fetch(`${admin}/api/backends`)).json()) as MergedBackends;
    expect((await merged()).backends[0]!.targets[0]).toMatchObject({ target: a.address, state: "drain" });
    expect((await merged()).workers.map((w) => w.backends[0]!.targets[0]!.state)).toEqual(["drain", "drain"]);
    const single = (await (await fetch(`${admin}/api/backends/default`)).json()) as MergedBackends["backends"][number] & { workers: unknown[] };
    expect([single.name, single.targets[0]!.state, single.workers.length]).toEqual(["default", "drain", 2]);
    await using listed = spawn([process.execPath, "run", "src/cli.ts", "ctl", "targets", "default", "--admin", `${HOST}:${adminPort}`]);
    expect(await listed.exited(15_000)).toBe(0);
    expect(listed.stdoutText).toMatch(new RegExp(`^default\\s+${a.address.replace(/\./g, "\\.")}\\s+drain\\s+up\\s+1\\s`, "m"));

    // An unknown target: every worker says 404, the answer has their one error.
    const unknown = await post("/api/backends/default/targets/10.9.9.9:1/state", { state: "maint" });
    const unknownBody = (await unknown.json()) as { error: string; workers: WorkerResult[] };
    expect([unknown.status, unknownBody.error, unknownBody.workers.length]).toEqual([
      404,
      `unknown target "10.9.9.9:1" in backend "default" (targets: ${a.address})`,
      2,
    ]);

    // The same target under another spelling of its path, then the first again: the replay keeps the order the changes were made in.
    expect((await post(`/api/backends/default/targets/${a.address}/state`, { state: "ready" })).status).toBe(200);
    expect((await post(`/api/backends/default/targets/${target}/state`, { state: "drain" })).status).toBe(200);

    // A worker killed and restarted starts from the command line, then gets the drain replayed.
    const before = (await (await fetch(`${admin}/status`)).json()) as MergedStatus;
    const killed = before.workers.find((w) => w.worker === 2)!.pid;
    process.kill(killed, "SIGKILL");
    await waitFor(
      async () => {
        const status = (await (await fetch(`${admin}/status`)).json()) as MergedStatus;
        const second = status.workers.find((w) => w.worker === 2);
        return second !== undefined && second.pid !== killed && second.status.backends[0]!.targets[0]!.state === "drain";
      },
      15_000,
      "the restarted worker to be drained again",
    );
    expect((await merged()).backends[0]!.targets[0]!.state).toBe("drain");
    expect(supervisor.stderrText).toMatch(/\[worker 2:admin\] supervisor \(replayed to a restarted worker\) set default\/\S+ drain/);

    supervisor.proc.kill("SIGTERM");
    expect(await supervisor.exited(15_000)).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test("protect_reads with workers: /status and /metrics need the token at the supervisor, which asks its workers with it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-workers-control-"));
  try {
    await using a = listen(echo);
    writeFileSync(join(dir, "token"), TOKEN, { mode: 0o600 });
    const port = freePort();
    const adminPort = freePort();
    const config = join(dir, "router.toml");
    writeFileSync(
      config,
      `[[listeners]]\nlisten = "${HOST}:${port}"\nbackend = "redis"\n[backends.redis]\ntargets = ["${a.address}"]\n` +
        `[admin]\nlisten = "${HOST}:${adminPort}"\ntoken_file = "token"\nprotect_reads = true\n`,
    );
    await using supervisor = spawnCli(["--config", config, "--workers", "2"]);
    await supervisor.stderrMatch(/\[worker 2\] listening/, 15_000);
    const admin = `http://${HOST}:${adminPort}`;
    await waitFor(async () => (await fetch(`${admin}/readyz`).catch(() => null))?.status === 200, 10_000, "/readyz 200");
    const headers = { authorization: `Bearer ${TOKEN}` };
    for (const path of ["/status", "/metrics", "/api/backends"]) expect([path, (await fetch(`${admin}${path}`)).status]).toEqual([path, 401]);
    const status = (await (await fetch(`${admin}/status`, { headers })).json()) as MergedStatus;
    expect([status.workersRunning, status.workersUnreachable, status.workers.length]).toEqual([2, 0, 2]);
    const metrics = await (await fetch(`${admin}/metrics`, { headers })).text();
    expect(metrics).toContain('tcprouter_target_admin_state{worker="2",backend="redis"');
    expect(((await (await fetch(`${admin}/api/backends`, { headers })).json()) as MergedBackends).workers).toHaveLength(2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
