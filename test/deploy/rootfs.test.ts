/**
 * deploy/container/build-rootfs.sh: the compiled binary plus the libraries ldd lists make a
 * root filesystem that runs on its own. Checked with chroot in a private mount namespace
 * (needs root and unshare; /proc is mounted inside, as every container runtime does: the Bun
 * runtime aborts without /proc/self/maps). No container runtime needed.
 *
 * TCPROUTER_BINARY=path uses an already built binary instead of compiling one (~1 s, 110 MB).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dial, echo, freePort, hasCommand, HOST, listen, ROOT, run, spawn, waitFor, waitForListening } from "../helpers/net.ts";

const isRoot = process.getuid?.() === 0;
const canChroot = isRoot && hasCommand("unshare") && hasCommand("chroot") && hasCommand("ldd");
const freeBytes = (() => {
  const stats = statfsSync(tmpdir());
  return stats.bavail * stats.bsize;
})();
const enoughDisk = freeBytes > 512 * 1024 * 1024;
if (!canChroot) console.warn("skipping the rootfs tests: they need root, unshare, chroot and ldd");
else if (!enoughDisk) console.warn("skipping the rootfs tests: less than 512 MiB free in the temp dir");

let dir = "";
let rootfs = "";

beforeAll(async () => {
  if (!canChroot || !enoughDisk) return;
  dir = mkdtempSync(join(tmpdir(), "tcprouter-rootfs-"));
  rootfs = join(dir, "rootfs");
  let binary = process.env.TCPROUTER_BINARY ?? "";
  if (binary === "") {
    binary = join(dir, "tcprouter");
    const build = await run(
      [process.execPath, "build", "src/cli.ts", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "--outfile", binary],
      120_000,
    );
    if (build.code !== 0) throw new Error(`bun build --compile failed (${build.code}):\n${build.stdout}${build.stderr}`);
  }
  const assembled = await run(["sh", join(ROOT, "deploy/container/build-rootfs.sh"), binary, rootfs], 60_000);
  if (assembled.code !== 0) throw new Error(`build-rootfs.sh failed (${assembled.code}):\n${assembled.stderr}`);
}, 180_000);

afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

/** Runs /tcprouter ARGS inside the rootfs: a new mount namespace with /proc, chroot, exec (one PID throughout). */
function inRootfs(args: string[]): string[] {
  const quoted = args.map((arg) => `'${arg}'`).join(" ");
  return ["unshare", "--mount", "sh", "-c", `mount -t proc proc '${rootfs}/proc' && exec chroot --userspec=65532:65532 '${rootfs}' /tcprouter ${quoted}`];
}

test.skipIf(!canChroot || !enoughDisk)("the rootfs holds the binary, its loader and libc, the tcprouter user, and nothing from the build", () => {
  for (const path of ["tcprouter", "etc/passwd", "etc/group", "etc/nsswitch.conf", "etc/tcprouter", "tmp", "proc"])
    expect(existsSync(join(rootfs, path))).toBe(true);
  expect(existsSync(join(rootfs, "bin/sh"))).toBe(false);
  expect(Bun.file(join(rootfs, "etc/passwd")).size).toBeGreaterThan(0);
});

test.skipIf(!canChroot || !enoughDisk)(
  "the binary prints its version inside the rootfs as the tcprouter user",
  async () => {
    const result = await run(inRootfs(["--version"]), 30_000);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(`${(await Bun.file(join(ROOT, "package.json")).json()).version}\n`);
    expect(result.code).toBe(0);
  },
  30_000,
);

test.skipIf(!canChroot || !enoughDisk)(
  "the binary forwards exact bytes inside the rootfs and drains on SIGTERM",
  async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using router = spawn(inRootfs(["--listen", `${HOST}:${port}`, "--to", upstream.address, "--log-format", "json"]));
    await waitForListening(port, 15_000);
    await using client = await dial(port);
    const payload = "rootfs bytes \u00e9\r\n\u0000end";
    client.write(payload);
    await waitFor(() => client.text() === payload, 5000, "the echo through the router");
    expect(client.received().equals(Buffer.from(payload))).toBe(true);
    await client[Symbol.asyncDispose]();
    router.proc.kill("SIGTERM");
    expect(await router.exited(15_000)).toBe(0);
    const lines = router.stderrText
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines.some((line) => String(line.message).startsWith(`listening on ${HOST}:${port}`))).toBe(true);
    expect(lines.at(-1).message).toStartWith("stopped after");
  },
  30_000,
);
