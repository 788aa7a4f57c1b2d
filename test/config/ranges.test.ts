/**
 * Port ranges and `$port` in the config: a range is one listener per port, a `$port` backend
 * one backend per listener port; the limits and errors name their path; `check` prints a range
 * once.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { renderPlan } from "../../src/commands/check.ts";
import { MAX_PORT_RANGE, parseListenAddress } from "../../src/util/address.ts";

const config = (toml: string) => parseConfig(toml, "toml");

describe("parseListenAddress", () => {
  test.each([
    ["127.0.0.1:7000-7010", { kind: "range", host: "127.0.0.1", first: 7000, last: 7010 }],
    ["[::1]:7000-7001", { kind: "range", host: "::1", first: 7000, last: 7001 }],
    ["localhost:80-80", { kind: "range", host: "localhost", first: 80, last: 80 }],
    ["127.0.0.1:7000", { kind: "tcp", host: "127.0.0.1", port: 7000 }],
    ["127.0.0.1:0", { kind: "tcp", host: "127.0.0.1", port: 0 }],
    ["unix:/run/a:7000-7010", { kind: "unix", path: "/run/a:7000-7010" }],
  ])("%s", (input, want) => {
    expect(parseListenAddress(input)).toEqual(want as ReturnType<typeof parseListenAddress>);
  });

  test.each([
    ["127.0.0.1:7010-7000", '"127.0.0.1:7010-7000": the range starts after it ends (7010 > 7000)'],
    ["127.0.0.1:1-1025", `"127.0.0.1:1-1025": 1025 ports; a range spans at most ${MAX_PORT_RANGE}`],
    ["127.0.0.1:0-10", '"127.0.0.1:0-10": port 0 is out of range (a range takes 1-65535)'],
    ["127.0.0.1:65535-65536", '"127.0.0.1:65535-65536": port 65536 is out of range'],
    ["bad host:1-2", '"bad host:1-2": "bad host" is not a valid hostname'],
  ])("refuses %s", (input, message) => {
    expect(() => parseListenAddress(input)).toThrow(message);
  });

  test("takes a range of exactly the most ports", () => {
    expect(parseListenAddress(`127.0.0.1:1000-${1000 + MAX_PORT_RANGE - 1}`)).toMatchObject({ first: 1000, last: 1000 + MAX_PORT_RANGE - 1 });
  });
});

describe("expansion", () => {
  test("a range is one listener per port, named after its address or NAME:PORT", () => {
    const c = config(
      `[[listeners]]\nlisten = "127.0.0.1:7000-7002"\nbackend = "app"\n[[listeners]]\nname = "web"\nlisten = "[::1]:8000-8001"\nbackend = "app"\n[backends.app]\ntargets = ["10.0.0.5:6379"]\n`,
    );
    expect(c.listeners.map((l) => [l.name, l.listen, l.backend])).toEqual([
      ["127.0.0.1:7000", { kind: "tcp", host: "127.0.0.1", port: 7000 }, "app"],
      ["127.0.0.1:7001", { kind: "tcp", host: "127.0.0.1", port: 7001 }, "app"],
      ["127.0.0.1:7002", { kind: "tcp", host: "127.0.0.1", port: 7002 }, "app"],
      ["web:8000", { kind: "tcp", host: "::1", port: 8000 }, "app"],
      ["web:8001", { kind: "tcp", host: "::1", port: 8001 }, "app"],
    ]);
    expect(c.listeners[0]!.range).toEqual({ listen: "127.0.0.1:7000-7002", ports: 3, name: null });
    expect(c.listeners[3]!.range).toEqual({ listen: "[::1]:8000-8001", ports: 2, name: "web" });
    expect([...c.backends.keys()]).toEqual(["app"]);
  });

  test("a backend with $port targets is one backend per listener port, in its place", () => {
    const c = config(
      `[[listeners]]\nlisten = "127.0.0.1:7001-7002"\nbackend = "app"\n[[listeners]]\nlisten = "127.0.0.1:7000"\nbackend = "app"\n[[listeners]]\nlisten = "127.0.0.1:9000"\nbackend = "other"\n` +
        `[backends.other]\ntargets = ["10.0.0.9:1"]\n[backends.app]\nretries = 1\ntargets = ["10.0.0.5:$port", { address = "[fd00::6]:$port", weight = 3 }, "10.0.0.7:6379"]\n`,
    );
    expect(c.listeners.map((l) => l.backend)).toEqual(["app:7001", "app:7002", "app:7000", "other"]);
    expect([...c.backends.keys()]).toEqual(["other", "app:7000", "app:7001", "app:7002"]);
    const app = c.backends.get("app:7001")!;
    expect(app.portOf).toEqual({ backend: "app", port: 7001 });
    expect(app.retries).toBe(1);
    expect(app.targets.map((t) => [t.address, t.weight, t.dialledPort ?? false])).toEqual([
      [{ kind: "tcp", host: "10.0.0.5", port: 7001 }, 1, true],
      [{ kind: "tcp", host: "fd00::6", port: 7001 }, 3, true],
      [{ kind: "tcp", host: "10.0.0.7", port: 6379 }, 1, false],
    ]);
  });

  test("routes of an sni range go to their port's backend", () => {
    const c = config(
      `[[listeners]]\nlisten = "127.0.0.1:443-444"\nmode = "sni"\n[[listeners.routes]]\nserver_names = ["a.example"]\nbackend = "app"\n[backends.app]\ntargets = ["10.0.0.5:$port"]\n`,
    );
    expect(c.listeners.map((l) => l.routes.map((r) => r.backend))).toEqual([["app:443"], ["app:444"]]);
  });
});

describe("errors", () => {
  const one = (listeners: string, targets = '["10.0.0.5:$port"]', extra = "") => `${extra}${listeners}\n[backends.app]\ntargets = ${targets}\n`;
  test.each([
    [
      "a range beyond the limit",
      one(`[[listeners]]\nlisten = "127.0.0.1:1000-3000"\nbackend = "app"`),
      `listeners[0].listen: "127.0.0.1:1000-3000": 2001 ports; a range spans at most ${MAX_PORT_RANGE}`,
    ],
    [
      "$port behind a unix listener",
      one(`[[listeners]]\nlisten = "unix:/tmp/a.sock"\nbackend = "app"`),
      'listeners[0].backend: backend "app" has $port targets (targets[0]), and unix:/tmp/a.sock has no port to fill them with',
    ],
    [
      "$port behind port 0",
      one(`[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "app"`),
      'listeners[0].backend: backend "app" has $port targets (targets[0]), and port 0 (any free port) is not known before binding',
    ],
    [
      "$port with no listener",
      one(`[[listeners]]\nlisten = "127.0.0.1:1"\nbackend = "other"\n[backends.other]\ntargets = ["10.0.0.1:1"]`),
      "backends.app.targets[0]: $port: no listener uses this backend, so no port is dialled to fill in",
    ],
    [
      "a range over another listener's port",
      one(`[[listeners]]\nlisten = "127.0.0.1:7005"\nbackend = "app"\n[[listeners]]\nlisten = "127.0.0.1:7000-7010"\nbackend = "app"`),
      "listeners[1].listen: 127.0.0.1:7005 (in 127.0.0.1:7000-7010) is already used by listeners[0]",
    ],
    [
      "two ranges that overlap",
      one(`[[listeners]]\nlisten = "127.0.0.1:7000-7010"\nbackend = "app"\n[[listeners]]\nlisten = "127.0.0.1:7010-7020"\nbackend = "app"`),
      "listeners[1].listen: 127.0.0.1:7010 (in 127.0.0.1:7010-7020) is already used by listeners[0]",
    ],
    [
      "a range name taken by another listener",
      one(
        `[[listeners]]\nname = "web"\nlisten = "127.0.0.1:7000-7001"\nbackend = "app"\n[[listeners]]\nname = "web:7001"\nlisten = "127.0.0.1:9000"\nbackend = "app"`,
      ),
      'listeners[1].name: the name "web:7001" is already used by listeners[0]',
    ],
    [
      "the admin listener inside a range",
      one(`[[listeners]]\nlisten = "127.0.0.1:7000-7001"\nbackend = "app"`, undefined, `[admin]\nlisten = "127.0.0.1:7001"\n`),
      "admin.listen: 127.0.0.1:7001 is already used by listeners[0] (a port of its range)",
    ],
    [
      "$port in a bad address",
      one(`[[listeners]]\nlisten = "127.0.0.1:1"\nbackend = "app"`, '["bad host:$port"]'),
      'backends.app.targets[0]: "bad host:$port": "bad host" is not a valid hostname',
    ],
  ])("%s", (_, toml, message) => {
    expect(() => config(toml)).toThrow(message);
  });
});

describe("check", () => {
  test("prints a range once, with its $port backend and targets", () => {
    const plan = renderPlan(
      config(
        `[[listeners]]\nlisten = "127.0.0.1:7000-7010"\nbackend = "app"\n[[listeners]]\nname = "web"\nlisten = "127.0.0.1:8000-8001"\nbackend = "one"\n` +
          `[backends.app]\ntargets = ["10.0.0.5:$port", { address = "10.0.0.6:9000", backup = true }]\n[backends.one]\ntargets = ["10.0.0.7:80", { srv = "_redis._tcp.example.internal" }]\n`,
      ),
    );
    const lines = plan.split("\n").slice(2);
    expect(lines).toEqual([
      "listener 127.0.0.1:7000-7010 (11 ports) → backend app ($port) (round-robin, retries 2, no health checks)",
      "  10.0.0.5:$port weight 1",
      "  10.0.0.6:9000 backup",
      "listener web 127.0.0.1:8000-8001 (2 ports, named web:PORT) → backend one (round-robin, retries 2, no health checks)",
      "  10.0.0.7:80 weight 1",
      "  srv _redis._tcp.example.internal (port and weight from each record, lowest priority primary, higher ones backup)",
      "",
    ]);
  });
});
