/**
 * Regression (issue 19): listeners on `127.0.0.1:P` and `localhost:P` passed `check` (the
 * addresses were compared as written), then `serve` failed to bind the second with "address
 * already in use", which reads as if another program held the port. The same for a wildcard
 * `0.0.0.0:P` next to `127.0.0.1:P`. `checkAddressClashes` compares the addresses as the bind
 * sees them (names resolved, wildcards covering the addresses they take), and `check` and
 * `serve` run it before anything is bound, so the error names both listeners by their path.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkAddressClashes, type HostLookup } from "../../src/config/address-clash.ts";
import { parseConfig } from "../../src/config/load.ts";
import { freePort, run } from "../helpers/net.ts";

const hosts: Record<string, string> = { localhost: "127.0.0.1", "db.test": "10.0.0.5", "v6.test": "::1" };
const lookup: HostLookup = async (host) => hosts[host] ?? null;

function config(listens: string[], admin?: string): ReturnType<typeof parseConfig> {
  const listeners = listens.map((listen) => `[[listeners]]\nlisten = "${listen}"\nbackend = "b"\n`).join("");
  return parseConfig(`${listeners}${admin ? `[admin]\nlisten = "${admin}"\n` : ""}[backends.b]\ntargets = ["127.0.0.1:6379"]\n`, "toml");
}

describe("checkAddressClashes", () => {
  test.each([
    [
      "a name and the address it resolves to",
      ["127.0.0.1:7000", "localhost:7000"],
      ["listeners[1].listen: localhost:7000 is 127.0.0.1:7000, which listeners[0] already listens on"],
    ],
    [
      "the address after the name",
      ["localhost:7000", "127.0.0.1:7000"],
      ["listeners[1].listen: 127.0.0.1:7000 is localhost:7000, which listeners[0] already listens on"],
    ],
    [
      "0.0.0.0 and a local IPv4 address on one port",
      ["0.0.0.0:7000", "127.0.0.1:7000"],
      [
        "listeners[1].listen: 127.0.0.1:7000 overlaps 0.0.0.0:7000, which listeners[0] already listens on (0.0.0.0 listens on every IPv4 address of this machine)",
      ],
    ],
    [
      "an address, then the wildcard",
      ["localhost:7000", "0.0.0.0:7000"],
      [
        "listeners[1].listen: 0.0.0.0:7000 overlaps localhost:7000, which listeners[0] already listens on (0.0.0.0 listens on every IPv4 address of this machine)",
      ],
    ],
    [
      ":: covers IPv4 too",
      ["[::]:7000", "127.0.0.1:7000"],
      ["listeners[1].listen: 127.0.0.1:7000 overlaps [::]:7000, which listeners[0] already listens on (:: listens on every address of this machine, IPv4 too)"],
    ],
    ["different ports", ["127.0.0.1:7000", "localhost:7001", "0.0.0.0:7002"], []],
    ["IPv4 and IPv6 loopback", ["127.0.0.1:7000", "[::1]:7000", "v6.test:7001"], []],
    ["0.0.0.0 and an IPv6 address", ["0.0.0.0:7000", "[::1]:7000"], []],
    ["port 0 never clashes", ["127.0.0.1:0", "localhost:0", "0.0.0.0:0"], []],
    ["a name that does not resolve is left to the bind", ["127.0.0.1:7000", "nowhere.test:7000"], []],
  ] as const)("%s", async (_, listens, errors) => {
    expect(await checkAddressClashes(config([...listens]), lookup)).toEqual([...errors]);
  });

  test("the admin address is compared with the listeners'", async () => {
    expect(await checkAddressClashes(config(["0.0.0.0:7000"], "localhost:7000"), lookup)).toEqual([
      "admin.listen: localhost:7000 overlaps 0.0.0.0:7000, which listeners[0] already listens on (0.0.0.0 listens on every IPv4 address of this machine)",
    ]);
  });

  test("the system resolver: localhost is 127.0.0.1 here (/etc/hosts)", async () => {
    expect(await checkAddressClashes(config(["127.0.0.1:7000", "localhost:7000"]))).toEqual([
      "listeners[1].listen: localhost:7000 is 127.0.0.1:7000, which listeners[0] already listens on",
    ]);
  });
});

describe("check and serve report the clash in one line and exit 1", () => {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-clash-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const port = freePort();
  const file = (name: string, listens: string[]) => {
    const path = join(dir, name);
    const listeners = listens.map((listen) => `[[listeners]]\nlisten = "${listen}"\nbackend = "b"\n`).join("");
    writeFileSync(path, `${listeners}[backends.b]\ntargets = ["127.0.0.1:1"]\n`);
    return path;
  };
  const cases = [
    [
      "127.0.0.1 and localhost",
      ["127.0.0.1:PORT", "localhost:PORT"],
      "listeners[1].listen: localhost:PORT is 127.0.0.1:PORT, which listeners[0] already listens on",
    ],
    [
      "0.0.0.0 and 127.0.0.1",
      ["0.0.0.0:PORT", "127.0.0.1:PORT"],
      "listeners[1].listen: 127.0.0.1:PORT overlaps 0.0.0.0:PORT, which listeners[0] already listens on (0.0.0.0 listens on every IPv4 address of this machine)",
    ],
  ] as const;

  test.each(cases)(
    "check: %s",
    async (name, listens, error) => {
      const path = file(
        `check-${name.replaceAll(" ", "-")}.toml`,
        listens.map((l) => l.replace("PORT", String(port))),
      );
      const done = await run([process.execPath, "run", "src/cli.ts", "check", "--config", path], 15_000);
      expect(done).toEqual({ code: 1, stdout: "", stderr: `${path}: ${error.replaceAll("PORT", String(port))}\n` });
    },
    20_000,
  );

  test.each(cases)(
    "serve: %s",
    async (name, listens, error) => {
      const path = file(
        `serve-${name.replaceAll(" ", "-")}.toml`,
        listens.map((l) => l.replace("PORT", String(port))),
      );
      const done = await run([process.execPath, "run", "src/cli.ts", "--config", path], 15_000);
      expect(done.code).toBe(1);
      const lines = done.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toEndWith(`ERROR ${path}: ${error.replaceAll("PORT", String(port))}`);
      expect(done.stderr).not.toContain("address already in use");
    },
    20_000,
  );
});
