/**
 * SRV discovery: `{ srv = "_redis._tcp.example.internal" }` targets from SRV records. The pure
 * mapping (priority → backup, weight 0 → 1) is table-driven; the end-to-end tests ask a real
 * dnsmasq on loopback (test/helpers/dnsmasq.ts) and route sessions to Redis-like servers on
 * 127.0.0.1-127.0.0.4 that answer every command with their own name.
 */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../../src/config/load.ts";
import { lookupSrv, srvTargets, type SrvEntry } from "../../../src/backend/sources/srv.ts";
import { dial, listen, waitFor, type Server } from "../../helpers/net.ts";
import { hasDnsmasq, startDnsmasq } from "../../helpers/dnsmasq.ts";
import { startRouter } from "../../helpers/router.ts";

const entry = (host: string, port: number, priority: number, weight: number, addresses: string[]): SrvEntry => ({ host, port, priority, weight, addresses });

describe("srvTargets", () => {
  test.each([
    {
      what: "the lowest priority's records are primaries, the others backups; weight 0 counts as 1",
      entries: [entry("a.x", 6380, 10, 5, ["10.0.0.1"]), entry("b.x", 6381, 10, 0, ["10.0.0.2"]), entry("c.x", 6382, 20, 3, ["10.0.0.3"])],
      want: ["10.0.0.1:6380 w5 primary a.x:6380", "10.0.0.2:6381 w1 primary b.x:6381", "10.0.0.3:6382 w3 backup c.x:6382"],
    },
    {
      what: "three tiers: the second and third share the backup tier",
      entries: [entry("a.x", 1, 0, 1, ["10.0.0.1"]), entry("b.x", 2, 1, 1, ["10.0.0.2"]), entry("c.x", 3, 2, 1, ["10.0.0.3"])],
      want: ["10.0.0.1:1 w1 primary a.x:1", "10.0.0.2:2 w1 backup b.x:2", "10.0.0.3:3 w1 backup c.x:3"],
    },
    {
      what: "a host with several addresses gives a target per address; one met twice is used once",
      entries: [entry("a.x", 1, 0, 2, ["10.0.0.1", "fd00::1"]), entry("b.x", 1, 0, 9, ["10.0.0.1"])],
      want: ["10.0.0.1:1 w2 primary a.x:1", "[fd00::1]:1 w2 primary a.x:1"],
    },
    {
      what: "a lowest tier without addresses yet leaves the next tier the primaries",
      entries: [entry("a.x", 1, 0, 1, []), entry("b.x", 2, 5, 1, ["10.0.0.2"])],
      want: ["10.0.0.2:2 w1 primary b.x:2"],
    },
  ])("$what", ({ entries, want }) => {
    const got = srvTargets(entries, 0).map((t) => {
      const a = t.address as { host: string; port: number };
      const key = a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
      return `${key} w${t.weight} ${t.backup ? "backup" : "primary"} ${t.name}`;
    });
    expect(got).toEqual([...want]);
  });
});

describe("srv targets in the config", () => {
  test("are kept apart from the listed targets, lower case and without the trailing dot", () => {
    const config = parseConfig(
      `[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\ntargets = ["10.0.0.9:6379", { srv = "_Redis._tcp.Example.internal.", max_connections = 5 }]\n`,
      "toml",
    );
    const backend = config.backends.get("redis")!;
    expect(backend.targets.map((t) => t.address)).toEqual([{ kind: "tcp", host: "10.0.0.9", port: 6379 }]);
    expect(backend.srv).toEqual([{ srv: "_redis._tcp.example.internal", maxConnections: 5 }]);
  });

  test.each([
    ['{ srv = "redis.example.internal" }', 'backends.redis.targets[0].srv: "redis.example.internal" is not an SRV name'],
    ['{ srv = "_redis._tcp.example.internal", weight = 2 }', "backends.redis.targets[0].weight: not with srv (the weight is each SRV record's)"],
    ['{ srv = "_redis._tcp.example.internal", backup = true }', "backends.redis.targets[0].backup: not with srv"],
    ['{ srv = "_redis._tcp.x" }, { srv = "_redis._tcp.x" }', 'backends.redis.targets[1]: srv "_redis._tcp.x" is already listed as targets[0]'],
  ])("refuses %s", (targets, message) => {
    const toml = `[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\ntargets = [${targets}]\n`;
    expect(() => parseConfig(toml, "toml")).toThrow(message);
  });

  // Once refused ("a hostname target cannot share a backend with srv targets"): each source
  // replaced the backend's targets with its own only. Both now build them through every source.
  test("may share a backend with hostname targets", () => {
    const config = parseConfig(
      `[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\ntargets = [{ srv = "_redis._tcp.x" }, "redis.svc:6379"]\n`,
      "toml",
    );
    const backend = config.backends.get("redis")!;
    expect(backend.targets.map((t) => t.address)).toEqual([{ kind: "tcp", host: "redis.svc", port: 6379 }]);
    expect(backend.srv).toEqual([{ srv: "_redis._tcp.x", maxConnections: 0 }]);
  });
});

/** A Redis-like server on `host` (port 0, or `port`) answering every command with `+NAME\r\n`. */
function named(name: string, host: string, port = 0): Server {
  return listen({ data: (peer) => peer.write(`+${name}\r\n`) }, { hostname: host, port });
}

/** One session through the router: sends PING, returns the reply. */
async function ask(port: number): Promise<string> {
  const peer = await dial(port);
  peer.write("PING\r\n");
  await waitFor(() => peer.text().endsWith("\r\n"), 5000, "a reply");
  peer.terminate();
  return peer.text();
}

const SRV = "_redis._tcp.example.internal";

describe.skipIf(!hasDnsmasq())("SRV discovery against dnsmasq", () => {
  test("lookupSrv gives each record with its host's addresses, by priority", async () => {
    await using dnsmasq = await startDnsmasq([
      `--srv-host=${SRV},b.example.internal,6381,20,0`,
      `--srv-host=${SRV},a.example.internal,6380,10,5`,
      "--host-record=a.example.internal,127.0.0.1",
      "--host-record=b.example.internal,127.0.0.2",
    ]);
    const answer = await lookupSrv(SRV, [dnsmasq.address]);
    expect(answer.entries).toEqual([entry("a.example.internal", 6380, 10, 5, ["127.0.0.1"]), entry("b.example.internal", 6381, 20, 0, ["127.0.0.2"])]);
    expect(answer.ttl).toBe(1000);
    expect(answer.failed).toEqual([]);
    await expect(lookupSrv("_nothing._tcp.example.internal", [dnsmasq.address])).rejects.toThrow();
  });

  test("targets follow the records (address, port, weight, backup) and their changes without a reload", async () => {
    await using a = named("a", "127.0.0.1");
    await using b = named("b", "127.0.0.2");
    await using c = named("c", "127.0.0.3");
    await using dnsmasq = await startDnsmasq(
      [
        `--srv-host=${SRV},a.example.internal,${a.port},10,5`,
        `--srv-host=${SRV},b.example.internal,${b.port},20,0`,
        "--host-record=a.example.internal,127.0.0.1",
        "--host-record=b.example.internal,127.0.0.2",
      ],
      "",
    );
    await using router = await startRouter(
      `dns_servers = ["${dnsmasq.address}"]\n[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n` +
        `[backends.redis]\nresolve_interval = "1s"\ntargets = [{ srv = "${SRV}", max_connections = 100 }]\n`,
    );
    const targets = () =>
      router
        .backends()
        .get("redis")!
        .map((t) => `${t.key} ${t.name} w${t.weight} ${t.backup ? "backup" : "primary"} max${t.maxConnections}`);
    // at start: looked up before listening
    expect(targets()).toEqual([
      `127.0.0.1:${a.port} a.example.internal:${a.port} w5 primary max100`,
      `127.0.0.2:${b.port} b.example.internal:${b.port} w1 backup max100`,
    ]);
    expect(await ask(router.port)).toBe("+a\r\n");

    // the primary's record goes; c comes at the lowest priority, a stays as a backup
    await dnsmasq.restart([
      `--srv-host=${SRV},c.example.internal,${c.port},5,3`,
      `--srv-host=${SRV},a.example.internal,${a.port},10,5`,
      "--host-record=a.example.internal,127.0.0.1",
      "--host-record=c.example.internal,127.0.0.3",
    ]);
    await waitFor(() => targets()[0]?.startsWith("127.0.0.3"), 8000, "the new SRV set");
    expect(targets()).toEqual([
      `127.0.0.3:${c.port} c.example.internal:${c.port} w3 primary max100`,
      `127.0.0.1:${a.port} a.example.internal:${a.port} w5 backup max100`,
    ]);
    expect(await ask(router.port)).toBe("+c\r\n");
    expect(router.matching(`${SRV} now resolves to`).length).toBeGreaterThan(0);
    expect(router.view.reloads).toBe(0);
  }, 20_000);

  test("a host's addresses follow its A records (an addn-hosts file re-read on SIGHUP)", async () => {
    await using first = named("first", "127.0.0.1");
    await using _moved = named("moved", "127.0.0.4", first.port);
    await using dnsmasq = await startDnsmasq([`--srv-host=${SRV},h.example.internal,${first.port},10,1`], "127.0.0.1 h.example.internal\n");
    await using router = await startRouter(
      `dns_servers = ["${dnsmasq.address}"]\n[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\nresolve_interval = "1s"\ntargets = [{ srv = "${SRV}" }]\n`,
    );
    expect(
      router
        .backends()
        .get("redis")!
        .map((t) => t.key),
    ).toEqual([`127.0.0.1:${first.port}`]);
    expect(await ask(router.port)).toBe("+first\r\n");
    await dnsmasq.hup("127.0.0.4 h.example.internal\n");
    await waitFor(() => router.backends().get("redis")![0]?.key === `127.0.0.4:${first.port}`, 8000, "the moved host");
    expect(await ask(router.port)).toBe("+moved\r\n");
  }, 20_000);

  test("a backend with hostname and SRV targets keeps both as either one changes", async () => {
    await using a = named("a", "127.0.0.1");
    await using _moved = named("moved", "127.0.0.2", a.port);
    await using c = named("c", "127.0.0.3");
    await using dnsmasq = await startDnsmasq(
      [`--srv-host=${SRV},c.example.internal,${c.port},10,1`, "--host-record=c.example.internal,127.0.0.3"],
      "127.0.0.1 h.example.internal\n",
    );
    await using router = await startRouter(
      `dns_servers = ["${dnsmasq.address}"]\n[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n` +
        `[backends.redis]\nresolve_interval = "1s"\ntargets = ["h.example.internal:${a.port}", { srv = "${SRV}" }]\n`,
    );
    const targets = () =>
      router
        .backends()
        .get("redis")!
        .map((t) => `${t.key} ${t.name}`);
    // at start: the hostname's address, then the SRV record's
    expect(targets()).toEqual([`127.0.0.1:${a.port} h.example.internal:${a.port}`, `127.0.0.3:${c.port} c.example.internal:${c.port}`]);

    // the hostname moves: its new address, and the SRV target stays
    await dnsmasq.hup("127.0.0.2 h.example.internal\n");
    await waitFor(() => targets()[0]?.startsWith("127.0.0.2"), 8000, "the moved hostname");
    expect(targets()).toEqual([`127.0.0.2:${a.port} h.example.internal:${a.port}`, `127.0.0.3:${c.port} c.example.internal:${c.port}`]);

    // the SRV record goes (NXDOMAIN keeps the last targets), then comes back with another port:
    // the SRV target changes, and the hostname's stays
    await dnsmasq.restart([`--srv-host=${SRV},a.example.internal,${a.port},10,1`, "--host-record=a.example.internal,127.0.0.1"]);
    await waitFor(() => targets()[1]?.startsWith("127.0.0.1"), 8000, "the new SRV record");
    expect(targets()).toEqual([`127.0.0.2:${a.port} h.example.internal:${a.port}`, `127.0.0.1:${a.port} a.example.internal:${a.port}`]);
    expect(router.view.reloads).toBe(0);
  }, 20_000);

  test("a failed SRV lookup keeps the last targets", async () => {
    await using a = named("a", "127.0.0.1");
    await using dnsmasq = await startDnsmasq([`--srv-host=${SRV},a.example.internal,${a.port},10,1`, "--host-record=a.example.internal,127.0.0.1"]);
    await using router = await startRouter(
      `dns_servers = ["${dnsmasq.address}"]\n[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n[backends.redis]\nresolve_interval = "1s"\ntargets = [{ srv = "${SRV}" }]\n`,
    );
    // the record is gone: dnsmasq without upstream refuses the name
    await dnsmasq.restart(["--host-record=a.example.internal,127.0.0.1"]);
    await waitFor(() => router.matching("SRV lookup failed").length > 0, 8000, "a failed lookup");
    expect(
      router
        .backends()
        .get("redis")!
        .map((t) => t.key),
    ).toEqual([`127.0.0.1:${a.port}`]);
    expect(await ask(router.port)).toBe("+a\r\n");
  }, 20_000);
});
