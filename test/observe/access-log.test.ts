/** The access log: one correct line per session, with the reason each kind of ending gives. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AccessLog, AccessLogError, type AccessLogFormat } from "../../src/observe/access-log.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { ForwardOptions } from "../../src/proxy/forward.ts";
import { createRouter } from "../../src/proxy/create-router.ts";
import { buildClientHello } from "../helpers/client-hello.ts";
import { captureLogger, dial, echo, freePort, HOST, listen, MiB, slowReader, source, spawnCli, waitFor, type Behaviour, type Peer } from "../helpers/net.ts";
import { type Forwarder, startForward } from "../helpers/router.ts";

const dir = mkdtempSync(join(tmpdir(), "tcprouter-access-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = () => join(dir, `access-${++files}.log`);

const linesOf = (path: string): string[] =>
  existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
    : [];

/** A logfmt line as key → value (values may be JSON-quoted). */
function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const match of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) out[match[1]!] = match[2]!.startsWith('"') ? JSON.parse(match[2]!) : match[2]!;
  return out;
}

/** A forwarder to `upstream` whose sessions go to an access log file. */
async function withLog(to: string, options: Partial<ForwardOptions> = {}, format: AccessLogFormat = "text") {
  const fwd = await startForward({ to, ...options });
  const path = tempFile();
  const log = new AccessLog({ to: path, format });
  fwd.view.observe(log);
  return { fwd, log, path };
}

/** The client's own address, as the forwarder sees it (read while the socket is open). */
const clientOf = (peer: Peer) => `${HOST}:${peer.socket.localPort}`;

/** Waits for the session to end, closes the log (which writes it) and returns its one line. */
async function onlyLine(fwd: Forwarder, log: AccessLog, path: string): Promise<Record<string, string>> {
  await waitFor(() => fwd.view.sessions.size === 0 && fwd.stats().totalSessions > 0, 5000, "the session to end");
  log.close();
  const lines = linesOf(path);
  expect(lines).toHaveLength(1);
  return fields(lines[0]!);
}

describe("one line per session, with the close reason of each kind of ending", () => {
  test("client_fin: the client half-closes first", async () => {
    await using upstream = listen(echo);
    const { fwd, log, path } = await withLog(upstream.address);
    await using _ = fwd;
    await using client = await dial(fwd.port);
    const address = clientOf(client);
    client.write("hello");
    await waitFor(() => client.bytesIn === 5, 5000, "the echo");
    client.shutdown();
    const line = await onlyLine(fwd, log, path);
    expect(line).toMatchObject({
      listener: `${HOST}:0`,
      client: address,
      sni: "-",
      backend: "default",
      target: upstream.address,
      bytes_up: "5",
      bytes_down: "5",
      reason: "client_fin",
    });
    expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Number(line.duration_ms)).toBeGreaterThanOrEqual(0);
    expect(line.detail).toBeUndefined();
    expect(Object.keys(line)).toEqual(["time", "listener", "client", "sni", "backend", "target", "bytes_up", "bytes_down", "duration_ms", "reason"]);
  });

  test("upstream_fin: the upstream sends a banner and half-closes first", async () => {
    const banner: Behaviour = {
      open: (peer) => {
        peer.write("220 hello\r\n");
        peer.shutdown();
      },
    };
    await using upstream = listen(banner);
    const { fwd, log, path } = await withLog(upstream.address);
    await using _ = fwd;
    await using client = await dial(fwd.port);
    const address = clientOf(client);
    await waitFor(() => client.ended, 5000, "the banner and FIN");
    client.shutdown();
    expect(await onlyLine(fwd, log, path)).toMatchObject({ bytes_up: "0", bytes_down: "11", reason: "upstream_fin", client: address });
  });

  test("client_reset: the client resets while bytes wait for the upstream", async () => {
    await using upstream = listen(slowReader);
    const { fwd, log, path } = await withLog(upstream.address, { highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 });
    await using _ = fwd;
    await using client = await dial(fwd.port);
    void client.stream(8 * MiB);
    await waitFor(() => fwd.stats().queuedBytes >= 64 * 1024, 10_000, "the up pipe to fill");
    client.terminate();
    const line = await onlyLine(fwd, log, path);
    expect(line.reason).toBe("client_reset");
    expect(Number(line.bytes_up)).toBeGreaterThanOrEqual(64 * 1024);
    expect(line.detail).toBeDefined();
  }, 15_000);

  test("upstream_reset: the upstream resets while bytes wait for the client", async () => {
    await using upstream = listen(source(1024 * MiB));
    const { fwd, log, path } = await withLog(upstream.address, { highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 });
    await using _ = fwd;
    await using _client = await dial(fwd.port, slowReader);
    await waitFor(() => fwd.stats().queuedBytes >= 64 * 1024, 10_000, "the down pipe to fill");
    (await upstream.peer(0)).terminate();
    const line = await onlyLine(fwd, log, path);
    expect(line.reason).toBe("upstream_reset");
    expect(Number(line.bytes_down)).toBeGreaterThanOrEqual(64 * 1024);
  }, 15_000);

  test("idle_timeout: no bytes either way for the idle timeout", async () => {
    await using upstream = listen(echo);
    const { fwd, log, path } = await withLog(upstream.address, { idleTimeout: "200ms" });
    await using _ = fwd;
    await using client = await dial(fwd.port);
    client.write("abc");
    await waitFor(() => client.bytesIn === 3, 5000, "the echo");
    await waitFor(() => client.hungUp, 5000, "the idle session to be closed");
    const line = await onlyLine(fwd, log, path);
    expect(line).toMatchObject({ bytes_up: "3", bytes_down: "3", reason: "idle_timeout" });
    expect(Number(line.duration_ms)).toBeGreaterThanOrEqual(150);
  });

  test("connect_failed: the target refuses; the line names the target and the error", async () => {
    const target = `${HOST}:${freePort()}`;
    const { fwd, log, path } = await withLog(target);
    await using _ = fwd;
    await using client = await dial(fwd.port);
    await waitFor(() => client.hungUp, 5000, "the client to be closed");
    expect(await onlyLine(fwd, log, path)).toMatchObject({
      target,
      bytes_up: "0",
      bytes_down: "0",
      reason: "connect_failed",
      detail: `${target} ECONNREFUSED`,
    });
  });

  test("three sessions give three lines, in the order they ended", async () => {
    await using upstream = listen(echo);
    const { fwd, log, path } = await withLog(upstream.address);
    await using _ = fwd;
    const addresses: string[] = [];
    for (const size of [1, 22, 333]) {
      await using client = await dial(fwd.port);
      addresses.push(clientOf(client));
      client.write("x".repeat(size));
      await waitFor(() => client.bytesIn === size, 5000, "the echo");
      client.shutdown();
      await waitFor(() => client.closed, 5000, "the session to end");
    }
    log.close();
    const lines = linesOf(path).map(fields);
    expect(lines.map((line) => [line.client, line.bytes_up, line.bytes_down, line.reason])).toEqual(
      addresses.map((address, i) => [address, String([1, 22, 333][i]), String([1, 22, 333][i]), "client_fin"]),
    );
  });
});

describe("what SNI routing and PROXY protocol tell", () => {
  test("the server name of an SNI listener, and the client address from a PROXY header", async () => {
    await using upstream = listen(echo); // not TLS: the router only reads the ClientHello and passes it on
    const config = parseConfig(
      `[[listeners]]\nname = "sni"\nlisten = "${HOST}:0"\nmode = "sni"\n[[listeners.routes]]\nserver_names = ["db.example.com"]\nbackend = "echo"\n` +
        `[[listeners]]\nname = "behind-lb"\nlisten = "${HOST}:0"\nbackend = "echo"\naccept_proxy = true\ntrusted = ["127.0.0.1/32"]\n` +
        `[backends.echo]\ntargets = ["${upstream.address}"]\n`,
      "toml",
    );
    const handle = await createRouter(config, { logger: captureLogger().logger });
    const path = tempFile();
    const log = new AccessLog({ to: path, format: "json" });
    handle.view.observe(log);
    try {
      const [sni, behindLb] = handle.listeners.map((listener) => listener.port) as [number, number];
      const hello = buildClientHello({ serverName: "db.example.com" });
      {
        await using client = await dial(sni);
        client.write(hello);
        await waitFor(() => client.bytesIn === hello.length, 5000, "the hello's echo");
        client.shutdown();
        await waitFor(() => client.closed, 5000, "the session to end");
      }
      {
        await using client = await dial(behindLb);
        client.write(`PROXY TCP4 203.0.113.7 ${HOST} 51234 ${behindLb}\r\nping`);
        await waitFor(() => client.bytesIn === 4, 5000, "the echo");
        client.shutdown();
        await waitFor(() => client.closed, 5000, "the session to end");
      }
      await waitFor(() => handle.view.sessions.size === 0, 5000, "the sessions to end");
      log.close();
      expect(linesOf(path).map((line) => JSON.parse(line))).toEqual([
        expect.objectContaining({ listener: "sni", sni: "db.example.com", backend: "echo", bytes_up: hello.length, reason: "client_fin" }),
        expect.objectContaining({ listener: "behind-lb", client: "203.0.113.7:51234", sni: null, bytes_up: 4, bytes_down: 4, reason: "client_fin" }),
      ]);
    } finally {
      log.close();
      await handle.stop({ drainTimeout: 0 });
    }
  });
});

describe("formats and files", () => {
  test("JSON: one object per line, numbers as numbers, null for what is not known", async () => {
    const target = `${HOST}:${freePort()}`;
    const { fwd, log, path } = await withLog(target, {}, "json");
    await using _ = fwd;
    await using client = await dial(fwd.port);
    const address = clientOf(client);
    await waitFor(() => client.hungUp, 5000, "the client to be closed");
    await waitFor(() => fwd.view.sessions.size === 0, 5000, "the session to end");
    log.close();
    const lines = linesOf(path);
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toEqual({
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      listener: `${HOST}:0`,
      client: address,
      sni: null,
      backend: "default",
      target,
      bytes_up: 0,
      bytes_down: 0,
      duration_ms: expect.any(Number),
      reason: "connect_failed",
      detail: `${target} ECONNREFUSED`,
    });
  });

  // A connection closed at accept was logged as "denied" while stats, metrics and the status
  // page call it "refused"; one name everywhere now.
  test("a connection refused at accept is logged as refused, with why", async () => {
    const { fwd, log, path } = await withLog(`${HOST}:1`);
    await using _ = fwd;
    log.refused(fwd.view.listeners[0]!, "10.1.2.3", 4567, "max_connections 1 reached");
    log.close();
    expect(linesOf(path).map(fields)).toEqual([
      expect.objectContaining({
        client: "10.1.2.3:4567",
        target: "-",
        bytes_up: "0",
        bytes_down: "0",
        duration_ms: "0",
        reason: "refused",
        detail: "max_connections 1 reached",
      }),
    ]);
  });

  test("lines are written within about a second without a flush call", async () => {
    await using upstream = listen(echo);
    const fwd = await startForward({ to: upstream.address });
    await using _ = fwd;
    const path = tempFile();
    const log = new AccessLog({ to: path });
    fwd.view.observe(log);
    try {
      await using client = await dial(fwd.port);
      client.write("x");
      await waitFor(() => client.bytesIn === 1, 5000, "the echo");
      client.shutdown();
      await waitFor(() => fwd.view.sessions.size === 0, 5000, "the session to end");
      const ended = Date.now();
      await waitFor(() => linesOf(path).length === 1, 3000, "the line in the file");
      expect(Date.now() - ended).toBeLessThan(2500);
    } finally {
      log.close();
    }
  });

  test("reopen() writes what waits to the old file and later lines to a new file at the path", async () => {
    await using upstream = listen(echo);
    const { fwd, log, path } = await withLog(upstream.address);
    await using _ = fwd;
    const session = async () => {
      await using client = await dial(fwd.port);
      client.shutdown();
      await waitFor(() => client.closed, 5000, "the session to end");
    };
    await session();
    renameSync(path, `${path}.1`);
    log.reopen();
    await session();
    await session();
    log.close();
    expect(linesOf(`${path}.1`)).toHaveLength(1);
    expect(linesOf(path)).toHaveLength(2);
  });

  test("a path that cannot be opened is an error naming it", () => {
    expect(() => new AccessLog({ to: join(dir, "missing", "access.log") })).toThrow(
      new AccessLogError(`access log: cannot open ${join(dir, "missing", "access.log")}: no such directory`),
    );
  });
});

describe("the CLI", () => {
  test("--access-log FILE: SIGUSR1 reopens the file (logrotate), and stop writes the last lines", async () => {
    await using upstream = listen(echo);
    const path = tempFile();
    const port = freePort();
    await using cli = spawnCli(["--listen", `${HOST}:${port}`, "--to", upstream.address, "--access-log", path, "--drain-timeout", "300ms"]);
    await cli.stderrMatch(/listening on/);
    const session = async () => {
      await using client = await dial(port);
      client.write("ping");
      await waitFor(() => client.bytesIn === 4, 5000, "the echo");
      client.shutdown();
      await waitFor(() => client.closed, 5000, "the session to end");
    };
    await session();
    await waitFor(() => linesOf(path).length === 1, 5000, "the first line");
    renameSync(path, `${path}.1`);
    cli.proc.kill("SIGUSR1");
    await cli.stderrMatch(/SIGUSR1: reopened the access log/);
    await session();
    await waitFor(() => linesOf(path).length === 1, 5000, "a line in the new file");

    // A session still open at stop is closed at the drain deadline; its line is written before exit.
    await using held = await dial(port);
    held.write("held");
    await waitFor(() => held.bytesIn === 4, 5000, "the held session's echo");
    cli.proc.kill("SIGTERM");
    expect(await cli.exited()).toBe(0);
    expect(linesOf(`${path}.1`).map((line) => fields(line).reason)).toEqual(["client_fin"]);
    expect(linesOf(path).map((line) => fields(line).reason)).toEqual(["client_fin", "drained"]);
  }, 30_000);

  test("--access-log stdout with --log-format json writes JSON lines to stdout, logs stay on stderr", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using cli = spawnCli(["--listen", `${HOST}:${port}`, "--to", upstream.address, "--access-log", "stdout", "--log-format", "json"]);
    await cli.stderrMatch(/listening on/);
    await using client = await dial(port);
    const address = clientOf(client);
    client.write("hi");
    await waitFor(() => client.bytesIn === 2, 5000, "the echo");
    client.shutdown();
    await waitFor(() => client.closed, 5000, "the session to end");
    cli.proc.kill("SIGTERM");
    expect(await cli.exited()).toBe(0);
    const lines = cli.stdoutText.split("\n").filter((line) => line !== "");
    expect(lines.map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ client: address, bytes_up: 2, bytes_down: 2, reason: "client_fin" })]);
    expect(cli.stderrText).not.toContain("client_fin");
  }, 20_000);

  test("an access log that cannot be opened stops the start, before listening", async () => {
    const path = join(dir, "missing", "access.log");
    const port = freePort();
    await using cli = spawnCli(["--listen", `${HOST}:${port}`, "--to", `${HOST}:1`, "--access-log", path]);
    expect(await cli.exited()).toBe(1);
    expect(cli.stderrText).toContain(`access log: cannot open ${path}: no such directory`);
    expect(cli.stderrText).not.toContain("listening on");
  }, 20_000);
});

test("logs a refused line for a connection refused at accept", async () => {
  const { forward } = await import("../../src/proxy/forward.ts");
  const { listen, dial, echo, waitFor, captureLogger } = await import("../helpers/net.ts");
  await using upstream = listen(echo);
  const handle = await forward({ listen: "127.0.0.1:0", to: `127.0.0.1:${upstream.port}`, maxConnections: 1, logger: captureLogger().logger });
  const file = join(dir, "refused.log");
  const log = new AccessLog({ to: file });
  handle.view.observe(log);
  try {
    const first = await dial(handle.port);
    first.write("x");
    await waitFor(() => first.bytesIn === 1, 5000, "the first session");
    const second = await dial(handle.port);
    await waitFor(() => second.hungUp, 5000, "the second connection to be refused");
    log.flush();
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("reason=refused");
    expect(lines[0]).toContain("max_connections 1 reached");
    first.terminate();
  } finally {
    log.close();
    await handle.stop({ drainTimeout: 0 });
  }
});
