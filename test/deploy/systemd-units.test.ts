/** deploy/systemd: the units pass systemd-analyze verify and agree with the router's defaults. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { hasCommand, ROOT, run } from "../helpers/net.ts";

const UNITS = join(ROOT, "deploy/systemd");
const hasAnalyze = hasCommand("systemd-analyze");
if (!hasAnalyze) console.warn("skipping systemd-analyze verify: systemd-analyze is not installed");

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

/** The units in a temp dir, ExecStart pointing at a binary that exists (verify checks it). */
function copyUnits(extra: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-units-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  for (const name of ["tcprouter.service", "tcprouter.socket"]) {
    writeFileSync(join(dir, name), readFileSync(join(UNITS, name), "utf8").replaceAll("/usr/local/bin/tcprouter", "/bin/true"));
  }
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

/** `systemd-analyze verify` exits 0 on unknown keys: what counts is what it prints about our files. */
async function verify(dir: string, names: string[]) {
  const result = await run(["systemd-analyze", "verify", ...names.map((name) => join(dir, name))], 30_000);
  const ours = `${result.stdout}${result.stderr}`.split("\n").filter((line) => names.some((name) => line.includes(name.replace(/\.\w+$/, ""))));
  return { code: result.code, ours };
}

test.skipIf(!hasAnalyze)(
  "systemd-analyze verify finds nothing to report in tcprouter.service and tcprouter.socket",
  async () => {
    const { code, ours } = await verify(copyUnits(), ["tcprouter.service", "tcprouter.socket"]);
    expect(ours).toEqual([]);
    expect(code).toBe(0);
  },
  30_000,
);

test.skipIf(!hasAnalyze)(
  "the verify check notices a misspelt key (it would not pass a broken unit)",
  async () => {
    const dir = copyUnits({ "tcprouter-typo.service": "[Service]\nExecStart=/bin/true\nKillSignall=SIGTERM\n" });
    const { ours } = await verify(dir, ["tcprouter-typo.service"]);
    expect(ours.join("\n")).toContain("KillSignall");
  },
  30_000,
);

function keys(name: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of readFileSync(join(UNITS, name), "utf8").split("\n")) {
    const match = /^(\w+)=(.*)$/.exec(line);
    if (match) map.set(match[1]!, match[2]!);
  }
  return map;
}

test("the service waits for READY=1, accepts MAINPID= from a new process, and stops after the default drain with a margin", () => {
  const service = keys("tcprouter.service");
  expect(service.get("Type")).toBe("notify");
  expect(service.get("NotifyAccess")).toBe("all");
  expect(service.get("KillSignal")).toBe("SIGTERM");
  expect(service.get("KillMode")).toBe("mixed");
  expect(service.get("ExecReload")).toBe("/bin/kill -HUP $MAINPID");
  const stopSeconds = Number(/^(\d+)s$/.exec(service.get("TimeoutStopSec")!)![1]);
  expect(stopSeconds * 1000).toBeGreaterThanOrEqual(DEFAULTS.drainTimeout + 5000);
});

test("the socket unit names the listener it binds like test/fixtures/config/example.toml does", () => {
  const socket = keys("tcprouter.socket");
  const config = Bun.TOML.parse(readFileSync(join(ROOT, "test/fixtures/config/example.toml"), "utf8")) as { listeners: { name?: string; listen: string }[] };
  const listener = config.listeners.find((entry) => entry.name === socket.get("FileDescriptorName"));
  expect(listener?.listen).toBe(socket.get("ListenStream"));
  expect(socket.get("Service")).toBe("tcprouter.service");
});
