/**
 * Regression (issue 19): a unix listener's socket file outlives a process killed with SIGKILL,
 * and the next start failed with "address already in use" although nobody listened. Before a
 * unix listener or a unix admin is bound, a socket file that refuses connections is removed
 * (src/util/unix-socket.ts). The fix holds because the removal needs both proofs that nobody
 * is there: lstat says a socket (never a regular file, a symlink or a directory) and a connect
 * is refused (ECONNREFUSED); a live socket accepts the connect and is left alone.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeSocket, removeStaleSocket } from "../../src/util/unix-socket.ts";
import { dial, echo, listen, run, spawnCli, waitFor } from "../helpers/net.ts";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-unix-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A socket file nobody listens on: bound by a child process that is then killed with SIGKILL. */
async function staleSocket(path: string): Promise<void> {
  const child = Bun.spawn(
    [process.execPath, "-e", `Bun.listen({ unix: ${JSON.stringify(path)}, socket: { data() {} } }); console.log("up"); setInterval(() => {}, 1000);`],
    {
      stdout: "pipe",
    },
  );
  const reader = child.stdout.getReader();
  await reader.read();
  child.kill("SIGKILL");
  await child.exited;
}

describe("removeStaleSocket", () => {
  test("removes a socket file nobody listens on, and only that", async () => {
    const dir = tempDir();
    const path = join(dir, "stale.sock");
    await staleSocket(path);
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(probeSocket(path)).toBe("refused");
    removeStaleSocket(path);
    expect(existsSync(path)).toBe(false);
    removeStaleSocket(path); // nothing there: nothing to do
  });

  test("leaves a live socket alone", async () => {
    const path = join(tempDir(), "live.sock");
    await using server = listen(echo, { unix: path });
    expect(probeSocket(path)).toBe("live");
    removeStaleSocket(path);
    expect(lstatSync(path).isSocket()).toBe(true);
    await using peer = await dial({ unix: path });
    expect(peer).toBeDefined();
    expect(server).toBeDefined();
  });

  test("a regular file, a symlink to a socket or a directory is an error naming it, and is left as it is", async () => {
    const dir = tempDir();
    const file = join(dir, "file.sock");
    writeFileSync(file, "keep me\n");
    expect(() => removeStaleSocket(file)).toThrow(`${file} is a regular file, not a socket (left as it is: move it away or choose another path)`);
    expect(readFileSync(file, "utf8")).toBe("keep me\n");
    const target = join(dir, "target.sock");
    await staleSocket(target);
    const link = join(dir, "link.sock");
    symlinkSync(target, link);
    expect(() => removeStaleSocket(link)).toThrow(`${link} is a symlink, not a socket`);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(lstatSync(target).isSocket()).toBe(true);
    const sub = join(dir, "dir.sock");
    mkdirSync(sub);
    expect(() => removeStaleSocket(sub)).toThrow(`${sub} is a directory, not a socket`);
    expect(lstatSync(sub).isDirectory()).toBe(true);
  });
});

describe("serve with a unix listener", () => {
  test("restarts on the socket file a SIGKILLed tcprouter left behind, and forwards", async () => {
    const dir = tempDir();
    const path = join(dir, "front.sock");
    await using upstream = listen(echo);
    const args = ["--listen", `unix:${path}`, "--to", upstream.address];
    {
      await using first = spawnCli(args);
      await first.stderrMatch(/listening on unix:/, 15_000);
      first.proc.kill("SIGKILL");
      await first.exited();
    }
    expect(lstatSync(path).isSocket()).toBe(true); // left behind
    await using second = spawnCli(args);
    await second.stderrMatch(/listening on unix:/, 15_000);
    await using peer = await dial({ unix: path });
    peer.write("ping");
    await waitFor(() => peer.text() === "ping", 5000, "the echo through the listener");
  }, 40_000);

  test("a unix admin restarts on the socket file a SIGKILLed tcprouter left behind", async () => {
    const dir = tempDir();
    const admin = join(dir, "admin.sock");
    await using upstream = listen(echo);
    const args = ["--listen", "127.0.0.1:0", "--to", upstream.address, "--admin", `unix:${admin}`];
    {
      await using first = spawnCli(args);
      await first.stderrMatch(/admin on unix:/, 15_000);
      first.proc.kill("SIGKILL");
      await first.exited();
    }
    expect(lstatSync(admin).isSocket()).toBe(true);
    await using second = spawnCli(args);
    await second.stderrMatch(/admin on unix:/, 15_000);
    const response = await fetch("http://localhost/healthz", { unix: admin });
    expect([response.status, await response.text()]).toEqual([200, "ok\n"]);
  }, 40_000);

  test("a path a live listener holds fails with one line: address already in use", async () => {
    const path = join(tempDir(), "held.sock");
    await using holder = listen(echo, { unix: path });
    const { code, stderr } = await run([process.execPath, "run", "src/cli.ts", "--listen", `unix:${path}`, "--to", "127.0.0.1:1"], 15_000);
    expect(code).toBe(1);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`ERROR cannot listen on unix:${path}: address already in use$`));
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(holder).toBeDefined();
  }, 20_000);

  test("a regular file at the path is named in a one-line error and left untouched", async () => {
    const path = join(tempDir(), "data.sock");
    writeFileSync(path, "not a socket\n");
    const { code, stderr } = await run([process.execPath, "run", "src/cli.ts", "--listen", `unix:${path}`, "--to", "127.0.0.1:1"], 15_000);
    expect(code).toBe(1);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      `ERROR cannot listen on unix:${path}: ${path} is a regular file, not a socket (left as it is: move it away or choose another path)`,
    );
    expect(readFileSync(path, "utf8")).toBe("not a socket\n");
  }, 20_000);
});
