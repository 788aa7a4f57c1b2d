/** The admin listener: /healthz, /readyz (503 while draining), /status, errors; and its CLI wiring. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAdmin, type Status } from "../../src/observe/admin.ts";
import { ListenError } from "../../src/proxy/listener.ts";
import { dial, echo, freePort, HOST, listen, spawnCli, waitFor } from "../helpers/net.ts";
import { scrape } from "../helpers/prometheus.ts";
import { type Forwarder, startForward } from "../helpers/router.ts";

async function get(url: string): Promise<{ status: number; body: string; type: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text(), type: response.headers.get("content-type") ?? "" };
}

async function session(fwd: Forwarder, data: string): Promise<void> {
  await using client = await dial(fwd.port);
  client.write(data);
  await waitFor(() => client.bytesIn === data.length, 5000, "the echo");
  client.shutdown();
  await waitFor(() => client.closed, 5000, "the session to end");
}

describe("endpoints", () => {
  test("/healthz is ok, /readyz is ready, unknown paths are 404 and other methods 405", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      expect(admin.url).toBe(`http://${HOST}:${admin.port}/`);
      expect(await get(`${admin.url}healthz`)).toEqual({ status: 200, body: "ok\n", type: "text/plain; charset=utf-8" });
      expect(await get(`${admin.url}readyz`)).toEqual({ status: 200, body: "ready\n", type: "text/plain; charset=utf-8" });
      expect((await get(`${admin.url}nope`)).status).toBe(404);
      const post = await fetch(`${admin.url}metrics`, { method: "POST" });
      expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
      expect((await get(admin.url)).type).toBe("text/html; charset=utf-8");
    } finally {
      await admin.stop();
    }
  });

  test("/readyz turns 503 as soon as the drain begins, while /healthz stays ok", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      await using held = await dial(fwd.port);
      held.write("x");
      await waitFor(() => held.bytesIn === 1, 5000, "the echo");
      expect((await get(`${admin.url}readyz`)).status).toBe(200);

      const stopped = fwd.stop({ drainTimeout: 10_000 });
      expect(await get(`${admin.url}readyz`)).toMatchObject({ status: 503, body: "draining\n" });
      expect((await get(`${admin.url}healthz`)).status).toBe(200);
      const { metrics } = await scrape(`${admin.url}metrics`);
      expect(metrics.get("tcprouter_draining")).toBe(1);
      const status = (await (await fetch(`${admin.url}status`)).json()) as Status;
      expect([status.ready, status.draining, status.totals.activeSessions]).toEqual([false, true, 1]);

      held.shutdown(); // the held session ends by itself: the drain finishes early
      expect((await stopped).drained).toBe(1);
      expect((await get(`${admin.url}readyz`)).status).toBe(503);
    } finally {
      await admin.stop();
    }
  });

  test("/status lists listeners, backends and targets with their counters", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      await session(fwd, "hello");
      await session(fwd, "world!");
      await waitFor(() => fwd.view.sessions.size === 0, 5000, "the sessions to end");
      const response = await fetch(`${admin.url}status`);
      expect(response.headers.get("content-type")).toStartWith("application/json");
      expect(response.headers.get("cache-control")).toBe("no-store");
      const status = (await response.json()) as Status;
      expect(status).toMatchObject({
        version: expect.any(String),
        ready: true,
        draining: false,
        totals: { activeSessions: 0, totalSessions: 2, bytesUp: 11, bytesDown: 11, connectFailures: 0, refused: 0 },
        listeners: [{ name: `${HOST}:0`, address: fwd.address, backend: "default", active: 0, accepted: 2, refused: 0, bytesUp: 11, bytesDown: 11 }],
        backends: [
          {
            name: "default",
            targets: [
              {
                target: upstream.address,
                healthy: true,
                state: "ready",
                active: 0,
                sessions: 2,
                connectFailures: 0,
                weight: 1,
                backup: false,
                maxConnections: 0,
              },
            ],
          },
        ],
      });
      expect(Date.parse(status.time)).toBeGreaterThanOrEqual(Date.parse(status.startedAt));
      expect(status.process.rssBytes).toBeGreaterThan(0);
    } finally {
      await admin.stop();
    }
  });

  test("/status?history adds one sample of the totals per second", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      expect(((await (await fetch(`${admin.url}status`)).json()) as Status).history).toBeUndefined();
      await session(fwd, "abc");
      let status: Status | undefined;
      await waitFor(
        async () => {
          status = (await (await fetch(`${admin.url}status?history`)).json()) as Status;
          return status.history!.length >= 2;
        },
        5000,
        "two samples",
      );
      const [first, second] = status!.history!;
      expect(second!.t - first!.t).toBeGreaterThanOrEqual(500); // one a second (a late tick shortens the next gap)
      expect(second).toEqual({ t: expect.any(Number), activeSessions: 0, totalSessions: 1, bytesUp: 3, bytesDown: 3 });
    } finally {
      await admin.stop();
    }
  });

  test("serves on a unix socket", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-admin-"));
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `unix:${dir}/admin.sock`, router: fwd.view });
    try {
      expect([admin.address, admin.port]).toEqual([`unix:${dir}/admin.sock`, 0]);
      const response = await fetch("http://localhost/readyz", { unix: `${dir}/admin.sock` });
      expect([response.status, await response.text()]).toEqual([200, "ready\n"]);
    } finally {
      await admin.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("an address in use is a ListenError naming it, and the metrics observer is removed again", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const busy = Bun.serve({ hostname: HOST, port: 0, fetch: () => new Response("") });
    try {
      expect(() => startAdmin({ listen: `${HOST}:${busy.port}`, router: fwd.view })).toThrow(
        new ListenError(`admin: cannot listen on ${HOST}:${busy.port}: address already in use`),
      );
      expect(fwd.view.observers).toHaveLength(0);
    } finally {
      await busy.stop(true);
    }
  });
});

describe("the CLI", () => {
  test("--admin serves the endpoints; on SIGTERM /readyz is 503 while open sessions drain", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    const adminPort = freePort();
    await using cli = spawnCli(["--listen", `${HOST}:${port}`, "--to", upstream.address, "--admin", `${HOST}:${adminPort}`, "--drain-timeout", "10s"]);
    await cli.stderrMatch(new RegExp(`admin on http://${HOST}:${adminPort}/`));
    const url = `http://${HOST}:${adminPort}/`;
    expect((await get(`${url}readyz`)).status).toBe(200);

    await using held = await dial(port);
    held.write("x");
    await waitFor(() => held.bytesIn === 1, 5000, "the echo");
    expect((await scrape(`${url}metrics`)).metrics.get("tcprouter_sessions_active", { listener: `${HOST}:${port}` })).toBe(1);

    cli.proc.kill("SIGTERM");
    await cli.stderrMatch(/draining 1 open session/);
    expect(await get(`${url}readyz`)).toMatchObject({ status: 503, body: "draining\n" });
    held.shutdown();
    expect(await cli.exited()).toBe(0);
  }, 20_000);

  test("[admin] listen in the config file starts the admin listener; --admin off turns it off", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-admin-"));
    try {
      const adminPort = freePort();
      const path = join(dir, "tcprouter.toml");
      await Bun.write(
        path,
        `[admin]\nlisten = "${HOST}:${adminPort}"\n[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\ntargets = ["${HOST}:1"]\n`,
      );
      {
        await using cli = spawnCli(["--config", path]);
        await cli.stderrMatch(/admin on /);
        expect((await get(`http://${HOST}:${adminPort}/healthz`)).body).toBe("ok\n");
        cli.proc.kill("SIGTERM");
        expect(await cli.exited()).toBe(0);
      }
      {
        await using cli = spawnCli(["--config", path, "--admin", "off"]);
        await cli.stderrMatch(/listening on/);
        expect(cli.stderrText).not.toContain("admin on");
        cli.proc.kill("SIGTERM");
        expect(await cli.exited()).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 20_000);

  test("a bad --admin address, or one in use, stops the start with one line and exit 1", async () => {
    {
      await using cli = spawnCli(["--to", `${HOST}:1`, "--listen", `${HOST}:0`, "--admin", "9901"]);
      expect(await cli.exited()).toBe(1);
      expect(cli.stderrText).toContain('--admin: "9901": expected host:port');
    }
    const busy = Bun.serve({ hostname: HOST, port: 0, fetch: () => new Response("") });
    try {
      const port = freePort();
      await using cli = spawnCli(["--to", `${HOST}:1`, "--listen", `${HOST}:${port}`, "--admin", `${HOST}:${busy.port}`]);
      expect(await cli.exited()).toBe(1);
      expect(cli.stderrText).toContain(`admin: cannot listen on ${HOST}:${busy.port}: address already in use`);
      expect(cli.stderrText).not.toMatch(/\n\s+at /); // no stack trace
      // The forwarding listener it had opened is closed again.
      const probe = Bun.listen({ hostname: HOST, port, socket: { data() {} } });
      probe.stop(true);
    } finally {
      await busy.stop(true);
    }
  }, 20_000);

  test("--admin with more than one worker: an address in use stops the supervisor before any worker starts", async () => {
    using taken = Bun.serve({ hostname: HOST, port: 0, fetch: () => new Response("") });
    await using cli = spawnCli(["--to", `${HOST}:1`, "--listen", `${HOST}:${freePort()}`, "--workers", "2", "--admin", `${HOST}:${taken.port}`]);
    expect(await cli.exited(10_000)).toBe(1);
    expect(cli.stderrText).toContain(`admin: cannot listen on ${HOST}:${taken.port}: address already in use`);
    expect(cli.stderrText).not.toContain("started 2 workers");
  });
});
