/**
 * The control API (src/observe/control.ts): drain, maint and weight under a client loop, auth,
 * bad requests, reloads keeping states, and the states in /status and /metrics.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { AccessLog } from "../../src/observe/access-log.ts";
import { startAdmin, type Status } from "../../src/observe/admin.ts";
import { loadAdminAuth, type AdminAuth, type BackendView, type StateResult } from "../../src/observe/control.ts";
import type { RouterView } from "../../src/proxy/handle.ts";
import { captureLogger, dial, echo, exchange, HOST, listen, waitFor, type Peer } from "../helpers/net.ts";
import { scrape } from "../helpers/prometheus.ts";
import { startRouter } from "../helpers/router.ts";

const TOKEN = "test-token-0123456789";
const WITH_TOKEN: AdminAuth = { token: TOKEN, protectReads: false };

function toml(targets: (number | { port: number; weight: number })[], balance = "round-robin"): string {
  const list = targets.map((t) => (typeof t === "number" ? `"${HOST}:${t}"` : `{ address = "${HOST}:${t.port}", weight = ${t.weight} }`));
  return `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "redis"\n\n[backends.redis]\nbalance = "${balance}"\nretries = 0\ntargets = [${list.join(", ")}]\n`;
}

/** startAdmin on 127.0.0.1:0 with a logger that keeps its lines; stopped when disposed. */
function control(router: RouterView, auth: AdminAuth = WITH_TOKEN, listenOn = `${HOST}:0`) {
  const log = captureLogger();
  const admin = startAdmin({ listen: listenOn, router, logger: log.logger, auth });
  return {
    ...admin,
    lines: log.lines,
    matching: log.matching,
    /** A request to `path` (with the token unless `token` is given); status and parsed body. */
    async call(path: string, init: { method?: string; body?: unknown; token?: string | null; raw?: string } = {}) {
      // No pooled connection: a later test's admin may get this one's port, and a stale socket would reset.
      const headers: Record<string, string> = { connection: "close" };
      const token = init.token === undefined ? TOKEN : init.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      const body = init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body));
      const base = admin.url.startsWith("unix://") ? "http://localhost/" : admin.url;
      const where = admin.url.startsWith("unix://") ? { unix: admin.url.slice("unix://".length) } : {};
      const response = await fetch(`${base}${path.replace(/^\//, "")}`, {
        method: init.method ?? (body === undefined ? "GET" : "POST"),
        headers,
        ...(body !== undefined ? { body } : {}),
        ...where,
      });
      const text = await response.text();
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(text);
      } catch {
        json = { text };
      }
      return { status: response.status, json, headers: response.headers };
    },
    async [Symbol.asyncDispose]() {
      await admin.stop();
    },
  };
}

const statePath = (port: number, backend = "redis") => `/api/backends/${backend}/targets/${encodeURIComponent(`${HOST}:${port}`)}/state`;
const weightPath = (port: number) => `/api/backends/redis/targets/${HOST}:${port}/weight`;

/** Client sessions in a loop (each one echo exchange), `workers` at a time, until disposed. */
function clientLoop(port: number, workers = 4) {
  let stop = false;
  /** completed: sessions every worker finished; byWorker: each worker's own count. */
  const state = { completed: 0, byWorker: Array.from({ length: workers }, () => 0), failures: [] as string[] };
  const loops = Array.from({ length: workers }, async (_, worker) => {
    for (let i = 0; !stop; i++) {
      try {
        await exchange(port, `worker ${worker} message ${i}`);
        state.completed++;
        state.byWorker[worker]!++;
      } catch (error) {
        state.failures.push((error as Error).message);
      }
    }
  });
  return Object.assign(state, {
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
    async [Symbol.asyncDispose]() {
      stop = true;
      await Promise.all(loops);
    },
  });
}

/** Opens `n` sessions and makes sure each one echoes (so each is connected to its target). */
async function hold(port: number, n: number): Promise<Peer[]> {
  const peers: Peer[] = [];
  for (let i = 0; i < n; i++) {
    const peer = await dial(port);
    peer.write(`held ${i};`);
    await waitFor(() => peer.bytesIn === `held ${i};`.length, 5000, "a held session to echo");
    peers.push(peer);
  }
  return peers;
}

describe("drain", () => {
  test("under a client loop: zero failed sessions, no new session on the target, open ones finish, wait answers once it has none", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using r = await startRouter(toml([a.port, b.port]));
    await using admin = control(r.view);
    // The two held sessions go to a: b is out while they are opened.
    expect((await admin.call(statePath(b.port), { body: { state: "maint" } })).status).toBe(200);
    const held = await hold(r.port, 2);
    expect((await admin.call(statePath(b.port), { body: { state: "ready" } })).status).toBe(200);
    expect(r.target(a.port).active).toBe(2);

    await using loop = clientLoop(r.port);
    await waitFor(() => loop.completed >= 40, 10_000, "client traffic before the drain");
    let answered = false;
    const draining = admin.call(statePath(a.port), { body: { state: "drain", wait: "20s" } }).finally(() => (answered = true));
    await waitFor(() => r.target(a.port).state === "drain", 5000, "the drain to apply");
    await waitFor(() => r.target(a.port).active === 2, 5000, "loop sessions on a to end"); // only the held ones are left
    const sessionsOnA = r.target(a.port).sessions;
    const sessionsOnB = r.target(b.port).sessions;
    const before = loop.completed;
    await waitFor(() => loop.completed >= before + 100, 20_000, "client traffic during the drain");
    expect(r.target(a.port).sessions).toBe(sessionsOnA);
    expect(r.target(b.port).sessions).toBeGreaterThanOrEqual(sessionsOnB + 100 - 4); // up to 4 (one per loop worker) were on b already

    // The open sessions go on: they still echo, and the drain waits for them.
    for (const [i, peer] of held.entries()) {
      const start = peer.bytesIn;
      peer.write(`still here ${i}`);
      await waitFor(() => peer.bytesIn === start + `still here ${i}`.length, 5000, "a held session to echo during the drain");
    }
    expect(answered).toBe(false);
    held[0]!.shutdown();
    await waitFor(() => held[0]!.closed, 5000, "the first held session to end");
    expect(answered).toBe(false);
    held[1]!.shutdown();
    const done = await draining;
    expect(done.status).toBe(200);
    const result = done.json as unknown as StateResult;
    expect(result.backend).toBe("redis");
    expect(result.targets).toEqual([{ target: `${HOST}:${a.port}`, state: "drain", was: "ready", active: 0, drained: true }]);
    expect(result.waitedMs).toBeGreaterThan(0);

    await loop.stop();
    expect(loop.failures).toEqual([]);
    expect(held.map((peer) => peer.text())).toEqual(["held 0;still here 0", "held 1;still here 1"]);
    expect(admin.matching(`set redis/${HOST}:${a.port} drain (was ready)`)).toHaveLength(1);
    expect(admin.matching(`127.0.0.1:`)).toHaveLength(3); // the audit lines name the client's address
  }, 60_000);

  test("wait answers drained: false with the sessions left when it runs out, and at once when the target has none", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using r = await startRouter(toml([a.port, b.port]));
    await using admin = control(r.view);
    await admin.call(statePath(b.port), { body: { state: "maint" } });
    const held = await hold(r.port, 1);
    const started = Date.now();
    const late = await admin.call(statePath(a.port), { body: { state: "drain", wait: "300ms" } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect((late.json as unknown as StateResult).targets[0]).toMatchObject({ state: "drain", active: 1, drained: false });
    const empty = await admin.call(statePath(b.port), { body: { state: "drain", wait: "30s" } });
    expect((empty.json as unknown as StateResult).targets[0]).toMatchObject({ state: "drain", was: "maint", active: 0, drained: true });
    expect((empty.json as unknown as StateResult).waitedMs).toBeLessThan(1000);
    held[0]!.shutdown();
  });

  test("a drained target that is made ready takes sessions again; with every target out, sessions fail at once with no_target", async () => {
    await using a = listen(echo);
    await using r = await startRouter(toml([a.port]));
    await using admin = control(r.view);
    await admin.call(statePath(a.port), { body: { state: "drain" } });
    const peer = await dial(r.port);
    await waitFor(() => peer.hungUp, 1000, "the session without a target to close (at once, not after the 5 s queue timeout)");
    expect(r.stats().noTarget).toBe(1);
    expect(r.matching("no target available")).toHaveLength(1);
    await admin.call(statePath(a.port), { body: { state: "ready" } });
    await exchange(r.port, "back");
    expect(r.target(a.port).sessions).toBe(1);
  });
});

describe("maint", () => {
  test("with close: its sessions end with target_maint (metrics, access log), the others go on, none reach it after", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-control-"));
    try {
      await using a = listen(echo);
      await using b = listen(echo);
      await using r = await startRouter(toml([a.port, b.port]));
      await using admin = control(r.view);
      const accessLog = new AccessLog({ to: join(dir, "access.log"), flushInterval: 60_000 });
      r.view.observe(accessLog);
      await admin.call(statePath(b.port), { body: { state: "maint" } });
      const onA = await hold(r.port, 2);
      await admin.call(statePath(b.port), { body: { state: "ready" } });
      const onB = await hold(r.port, 2); // round-robin: a is busier, but both are picked in turn
      expect(r.target(a.port).active + r.target(b.port).active).toBe(4);
      const heldOnB = r.target(b.port).active;

      await using loop = clientLoop(r.port);
      await waitFor(() => loop.completed >= 40, 10_000, "client traffic before maint");
      const answer = await admin.call(statePath(a.port), { body: { state: "maint", close: true } });
      expect(answer.status).toBe(200);
      const [entry] = (answer.json as unknown as StateResult).targets;
      expect(entry).toMatchObject({ target: `${HOST}:${a.port}`, state: "maint", was: "ready", active: 0 });
      expect(entry!.closed).toBeGreaterThanOrEqual(onA.length);
      for (const peer of onA) await waitFor(() => peer.hungUp, 5000, "a session on a to be closed");
      // A loop session on a when it was closed fails when its worker notices; once every worker
      // has finished a session since, every such failure is counted.
      const marks = [...loop.byWorker];
      await waitFor(() => loop.byWorker.every((n, worker) => n > marks[worker]!), 20_000, "every worker to finish a session after the close");
      const sessionsOnA = r.target(a.port).sessions;
      const failedBefore = loop.failures.length;
      const before = loop.completed;
      await waitFor(() => loop.completed >= before + 100, 20_000, "client traffic after maint");
      await loop.stop();
      expect(r.target(a.port).sessions).toBe(sessionsOnA);
      // Only loop sessions that were on a at that moment failed, none after.
      expect(loop.failures.length).toBeLessThanOrEqual(entry!.closed! - onA.length);
      expect(loop.failures.length).toBe(failedBefore);
      expect(r.target(b.port).active).toBe(heldOnB);
      for (const peer of onB.filter((p) => !p.hungUp)) {
        peer.write("!");
        await waitFor(() => peer.text().endsWith("!"), 5000, "a session on b to go on");
      }

      const { metrics } = await scrape(`${admin.url}metrics`);
      expect(metrics.get("tcprouter_sessions_closed_total", { listener: `${HOST}:0`, reason: "target_maint" })).toBe(entry!.closed!);
      expect(metrics.get("tcprouter_target_admin_state", { backend: "redis", target: `${HOST}:${a.port}`, state: "maint" })).toBe(1);
      expect(metrics.get("tcprouter_target_admin_state", { backend: "redis", target: `${HOST}:${a.port}`, state: "ready" })).toBe(0);
      accessLog.close();
      const lines = readFileSync(join(dir, "access.log"), "utf8").split("\n");
      expect(lines.filter((line) => line.includes("reason=target_maint"))).toHaveLength(entry!.closed!);
      expect(lines.filter((line) => line.includes("reason=target_maint")).every((line) => line.includes(`target=${HOST}:${a.port}`))).toBe(true);
      expect(admin.matching(`set redis/${HOST}:${a.port} maint (was ready), closed ${entry!.closed} session`)).toHaveLength(1);
      for (const peer of onB) peer.terminate();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("without close: open sessions go on, new ones go elsewhere", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using r = await startRouter(toml([a.port, b.port]));
    await using admin = control(r.view);
    await admin.call(statePath(b.port), { body: { state: "maint" } });
    const [held] = await hold(r.port, 1);
    await admin.call(statePath(b.port), { body: { state: "ready" } });
    await admin.call(statePath(a.port), { body: { state: "maint" } });
    for (let i = 0; i < 10; i++) await exchange(r.port, `m${i}`);
    expect([r.target(a.port).sessions, r.target(b.port).sessions]).toEqual([1, 10]);
    held!.write("on");
    await waitFor(() => held!.text() === "held 0;on", 5000, "the held session to echo");
    held!.shutdown();
    await waitFor(() => held!.closed, 5000, "the held session to end");
  });
});

describe("weight", () => {
  test("shares follow a runtime weight; weight 0 takes no new session; /status and /metrics show it", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using r = await startRouter(toml([a.port, b.port]));
    await using admin = control(r.view);
    const answer = await admin.call(weightPath(a.port), { body: { weight: 3 } });
    expect(answer).toMatchObject({ status: 200, json: { backend: "redis", targets: [{ target: `${HOST}:${a.port}`, weight: 3, was: 1 }] } });
    for (let i = 0; i < 40; i++) await exchange(r.port, `w${i}`);
    expect(Math.abs(r.target(a.port).sessions - 30)).toBeLessThanOrEqual(1);
    expect(Math.abs(r.target(b.port).sessions - 10)).toBeLessThanOrEqual(1);

    await admin.call(weightPath(a.port), { body: { weight: 0 } });
    const before = r.target(a.port).sessions;
    for (let i = 0; i < 10; i++) await exchange(r.port, `z${i}`);
    expect(r.target(a.port).sessions).toBe(before);
    const status = (await (await fetch(`${admin.url}status`)).json()) as Status;
    expect(status.backends[0]!.targets.map((t) => [t.weight, t.state])).toEqual([
      [0, "ready"],
      [1, "ready"],
    ]);
    const { metrics } = await scrape(`${admin.url}metrics`);
    expect(metrics.get("tcprouter_target_weight", { backend: "redis", target: `${HOST}:${a.port}` })).toBe(0);
    const list = (await admin.call("/api/backends")).json as { backends: BackendView[] };
    expect(list.backends[0]!.targets[0]).toMatchObject({ weight: 0, configuredWeight: 1, state: "ready", health: "up" });
    expect(admin.matching(`set redis/${HOST}:${a.port} weight 0 (was 3)`)).toHaveLength(1);
  });
});

describe("every change but maint with close, under a client loop", () => {
  test("weight 0, weights, maint, drain and ready: zero failed sessions, and each change shows in where new sessions go", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using r = await startRouter(toml([a.port, b.port], "least-conn"));
    await using admin = control(r.view);
    await using loop = clientLoop(r.port);
    /**
     * Sessions each target gets over the next `n` loop sessions. Up to 4 of them (one per loop
     * worker) may have picked their target just before the change and connect after it.
     */
    const next = async (n: number) => {
      const before = [r.target(a.port).sessions, r.target(b.port).sessions];
      const done = loop.completed;
      await waitFor(() => loop.completed >= done + n, 20_000, `${n} loop sessions`);
      return [r.target(a.port).sessions - before[0]!, r.target(b.port).sessions - before[1]!];
    };
    await waitFor(() => loop.completed >= 20, 10_000, "client traffic");
    const steps: [string, number, unknown, (shares: number[]) => boolean][] = [
      ["weight", a.port, { weight: 0 }, ([onA]) => onA! <= 4],
      ["weight", a.port, { weight: 1 }, ([onA, onB]) => onA! > 0 && onB! > 0],
      ["state", b.port, { state: "maint" }, ([, onB]) => onB! <= 4],
      ["state", b.port, { state: "ready" }, ([onA, onB]) => onA! > 0 && onB! > 0],
      ["state", a.port, { state: "drain" }, ([onA]) => onA! <= 4],
      ["state", a.port, { state: "ready" }, ([onA, onB]) => onA! > 0 && onB! > 0],
    ];
    for (const [action, port, body, expected] of steps) {
      const answer = await admin.call(action === "weight" ? weightPath(port) : statePath(port), { body });
      expect(answer.status).toBe(200);
      const shares = await next(100);
      expect([action, body, shares, expected(shares)]).toEqual([action, body, shares, true]);
    }
    await loop.stop();
    expect(loop.failures).toEqual([]);
  }, 90_000);
});

describe("reload", () => {
  test("keeps the states and runtime weights of targets that stay; a changed file weight wins; a new target starts ready", async () => {
    await using a = listen(echo);
    await using b = listen(echo);
    await using c = listen(echo);
    await using d = listen(echo);
    await using r = await startRouter(toml([a.port, b.port, c.port]));
    await using admin = control(r.view);
    await admin.call(statePath(a.port), { body: { state: "drain" } });
    await admin.call(weightPath(b.port), { body: { weight: 5 } });
    await admin.call(statePath(c.port), { body: { state: "maint" } });
    r.reload(parseConfig(toml([a.port, b.port, c.port, d.port]), "toml"));
    const view = () =>
      r
        .backends()
        .get("redis")!
        .map((t) => [t.state, t.weight, t.enabled]);
    expect(view()).toEqual([
      ["drain", 1, false],
      ["ready", 5, true],
      ["maint", 1, false],
      ["ready", 1, true],
    ]);
    for (let i = 0; i < 12; i++) await exchange(r.port, `r${i}`);
    expect([a, b, c, d].map((s) => r.target(s.port).sessions)).toEqual([0, 10, 0, 2]);
    r.reload(parseConfig(toml([a.port, { port: b.port, weight: 2 }, d.port]), "toml"));
    expect(view()).toEqual([
      ["drain", 1, false],
      ["ready", 2, true],
      ["ready", 1, true],
    ]);
    r.reload(parseConfig(toml([a.port, { port: b.port, weight: 2 }, c.port, d.port]), "toml"));
    expect(r.target(c.port).state).toBe("ready"); // removed and added again: a new target
    const status = (await (await fetch(`${admin.url}status`)).json()) as Status;
    expect(status.backends[0]!.targets.map((t) => t.state)).toEqual(["drain", "ready", "ready", "ready"]);
  });
});

describe("auth", () => {
  test("without a token changes answer 403 and reads are open", async () => {
    await using a = listen(echo);
    await using r = await startRouter(toml([a.port]));
    await using admin = control(r.view, { token: null, protectReads: false });
    const denied = await admin.call(statePath(a.port), { body: { state: "drain" } });
    expect(denied.status).toBe(403);
    expect(String(denied.json.error)).toContain("no admin token is configured");
    expect(r.target(a.port).state).toBe("ready");
    expect((await admin.call("/api/backends", { token: null })).status).toBe(200);
    expect((await admin.call("/status", { token: null })).status).toBe(200);
  });

  test("a missing, malformed or wrong token is 401 and changes nothing; the right one (any case of Bearer) works", async () => {
    await using a = listen(echo);
    await using r = await startRouter(toml([a.port]));
    await using admin = control(r.view);
    const url = `${admin.url}${statePath(a.port).slice(1)}`;
    const post = (authorization?: string) =>
      fetch(url, { method: "POST", body: '{"state":"drain"}', headers: authorization === undefined ? {} : { authorization } });
    const missing = await post();
    expect([missing.status, missing.headers.get("www-authenticate")]).toEqual([401, 'Bearer realm="tcprouter"']);
    expect(await missing.json()).toEqual({ error: "missing bearer token (Authorization: Bearer …)" });
    for (const wrong of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, "Bearer ", `Basic ${TOKEN}`, TOKEN, `Bearer ${TOKEN} extra`]) {
      expect([wrong, (await post(wrong)).status]).toEqual([wrong, 401]);
    }
    expect(await (await post("Bearer nope")).json()).toEqual({ error: "wrong token" });
    expect(r.target(a.port).state).toBe("ready");
    expect(admin.matching("set redis/")).toEqual([]);
    expect((await post(`bearer ${TOKEN}`)).status).toBe(200);
    expect(r.target(a.port).state).toBe("drain");
  });

  test("protect_reads: /api, /status, /metrics and the page need the token; /healthz and /readyz do not", async () => {
    await using a = listen(echo);
    await using r = await startRouter(toml([a.port]));
    await using admin = control(r.view, { token: TOKEN, protectReads: true });
    for (const path of ["/api/backends", "/status", "/metrics", "/"]) {
      expect([path, (await admin.call(path, { token: null })).status]).toEqual([path, 401]);
      expect([path, (await admin.call(path, { token: "wrong" })).status]).toEqual([path, 401]);
      expect([path, (await admin.call(path)).status]).toEqual([path, 200]);
    }
    for (const path of ["/healthz", "/readyz"]) expect((await admin.call(path, { token: null })).status).toBe(200);
  });

  test("a unix-socket admin is mode 0600, and its audit lines say unix", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-control-"));
    try {
      await using a = listen(echo);
      await using r = await startRouter(toml([a.port]));
      const path = join(dir, "admin.sock");
      await using admin = control(r.view, WITH_TOKEN, `unix:${path}`);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect((await admin.call(statePath(a.port), { body: { state: "maint" } })).status).toBe(200);
      expect(admin.matching(`unix set redis/${HOST}:${a.port} maint (was ready)`)).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("loadAdminAuth: the token file wins over the environment; protect_reads without a token is an error", () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-control-"));
    try {
      const file = join(dir, "token");
      writeFileSync(file, `  ${TOKEN}\n`, { mode: 0o600 });
      const env = { TCPROUTER_ADMIN_TOKEN: "from-env" };
      expect(loadAdminAuth({ tokenFile: file, protectReads: false, source: "--admin-token-file" }, env)).toEqual(WITH_TOKEN);
      expect(loadAdminAuth({ tokenFile: null, protectReads: true, source: "x" }, env)).toEqual({ token: "from-env", protectReads: true });
      expect(loadAdminAuth({ tokenFile: null, protectReads: false, source: "x" }, {})).toEqual({ token: null, protectReads: false });
      expect(() => loadAdminAuth({ tokenFile: null, protectReads: true, source: "x" }, {})).toThrow("admin.protect_reads: needs a token");
      expect(() => loadAdminAuth({ tokenFile: null, protectReads: false, source: "x" }, { TCPROUTER_ADMIN_TOKEN: "two words" })).toThrow(
        "TCPROUTER_ADMIN_TOKEN: holds more than one word",
      );
      expect(() => loadAdminAuth({ tokenFile: join(dir, "none"), protectReads: false, source: "--admin-token-file" }, env)).toThrow(
        `--admin-token-file: cannot read ${join(dir, "none")}: no such file`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("bad requests", () => {
  test("get a 4xx with a one-line JSON error, and the admin keeps serving", async () => {
    await using a = listen(echo);
    await using r = await startRouter(toml([a.port]));
    await using admin = control(r.view);
    const target = `${HOST}:${a.port}`;
    const cases: [what: string, path: string, init: Parameters<typeof admin.call>[1], status: number, error: string][] = [
      ["unknown backend", "/api/backends/nope/targets/x/state", { body: { state: "drain" } }, 404, 'unknown backend "nope" (backends: redis)'],
      ["unknown backend (read)", "/api/backends/nope", {}, 404, 'unknown backend "nope" (backends: redis)'],
      [
        "unknown target",
        "/api/backends/redis/targets/10.0.0.1:1/state",
        { body: { state: "drain" } },
        404,
        `unknown target "10.0.0.1:1" in backend "redis" (targets: ${target})`,
      ],
      ["not JSON", statePath(a.port), { raw: "{state: drain}" }, 400, "the body is not JSON: "],
      ["no body", statePath(a.port), { method: "POST" }, 400, 'expected a JSON object as the body, e.g. {"state":"drain"}'],
      ["an array", statePath(a.port), { body: ["drain"] }, 400, 'expected a JSON object as the body, e.g. {"state":"drain"}'],
      ["an unknown state", statePath(a.port), { body: { state: "disabled" } }, 400, 'state: expected "ready", "drain" or "maint", got "disabled"'],
      ["no state", statePath(a.port), { body: {} }, 400, 'state: expected "ready", "drain" or "maint", got nothing'],
      ["an unknown field", statePath(a.port), { body: { state: "drain", timeout: "1s" } }, 400, 'unknown field "timeout" (expected state, wait, close)'],
      ["wait with maint", statePath(a.port), { body: { state: "maint", wait: "1s" } }, 400, 'wait: only with "state": "drain"'],
      ["close with drain", statePath(a.port), { body: { state: "drain", close: true } }, 400, 'close: only with "state": "maint"'],
      ["wait as a number", statePath(a.port), { body: { state: "drain", wait: 30 } }, 400, 'wait: expected a duration such as "30s", got 30'],
      ["a bad wait", statePath(a.port), { body: { state: "drain", wait: "soon" } }, 400, "wait: "],
      ["a too long wait", statePath(a.port), { body: { state: "drain", wait: "2h" } }, 400, "wait: at most 1h"],
      ["close not a boolean", statePath(a.port), { body: { state: "maint", close: "yes" } }, 400, 'close: expected true or false, got "yes"'],
      ["weight over 256", weightPath(a.port), { body: { weight: 257 } }, 400, "weight: expected a whole number from 0 to 256, got 257"],
      ["a fractional weight", weightPath(a.port), { body: { weight: 1.5 } }, 400, "weight: expected a whole number from 0 to 256, got 1.5"],
      ["a weight as a string", weightPath(a.port), { body: { weight: "2" } }, 400, 'weight: expected a whole number from 0 to 256, got "2"'],
      ["a body over 4 KiB", statePath(a.port), { raw: JSON.stringify({ state: "drain", x: "y".repeat(5000) }) }, 413, "the body is over 4096 bytes"],
      ["GET on a change", statePath(a.port), {}, 405, "GET not allowed here (POST)"],
      ["POST on the list", "/api/backends", { body: {} }, 405, "POST not allowed here (GET)"],
      ["an unknown action", `/api/backends/redis/targets/${target}/enable`, { body: {} }, 404, 'unknown action "enable" (state or weight)'],
      ["an unknown path", "/api/servers", {}, 404, "not found: try GET /api/backends"],
      ["a target without an action", `/api/backends/redis/targets/${target}`, {}, 404, "not found: name the target and an action"],
      ["bad percent-encoding", "/api/backends/%E0%A4%A/targets/x/state", { body: { state: "drain" } }, 400, "the path is not valid percent-encoding"],
    ];
    for (const [what, path, init, status, error] of cases) {
      const answer = await admin.call(path, init);
      expect([what, answer.status]).toEqual([what, status]);
      expect([what, String(answer.json.error)]).toEqual([what, expect.stringContaining(error)]);
      expect(String(answer.json.error)).not.toContain("\n");
    }
    expect(r.target(a.port).state).toBe("ready");
    expect(r.target(a.port).weight).toBe(1);
    expect((await admin.call("/healthz")).status).toBe(200);
    expect(admin.matching("set redis/")).toEqual([]);
  });

  test("a target is found by its configured name, and a unix target by its percent-encoded path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-control-"));
    try {
      const socket = join(dir, "up.sock");
      await using up = listen(echo, { unix: socket });
      await using r = await startRouter(`[[listeners]]\nlisten = "${HOST}:0"\nbackend = "redis"\n[backends.redis]\ntargets = ["unix:${socket}"]\n`);
      await using admin = control(r.view);
      const answer = await admin.call(`/api/backends/redis/targets/${encodeURIComponent(`unix:${socket}`)}/state`, { body: { state: "drain" } });
      expect(answer.status).toBe(200);
      expect(r.backends().get("redis")![0]!.state).toBe("drain");
      expect(up.peers).toHaveLength(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a hostname target is found by its configured name: the change applies to every address it resolved to", async () => {
    await using a = listen(echo);
    await using r = await startRouter(`[[listeners]]\nlisten = "${HOST}:0"\nbackend = "redis"\n[backends.redis]\ntargets = ["localhost:${a.port}"]\n`);
    await using admin = control(r.view);
    const resolved = r.backends().get("redis")!;
    expect(resolved.length).toBeGreaterThanOrEqual(1);
    const answer = await admin.call(`/api/backends/redis/targets/localhost:${a.port}/state`, { body: { state: "maint" } });
    expect(answer.status).toBe(200);
    expect((answer.json as unknown as StateResult).targets.map((t) => t.target)).toEqual(resolved.map((t) => t.key));
    expect(resolved.every((t) => t.state === "maint" && t.name === `localhost:${a.port}`)).toBe(true);
  });
});
