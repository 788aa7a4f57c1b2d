/**
 * DNS discovery: hostname targets follow their A/AAAA records. End-to-end tests run a real DNS
 * server on loopback (a small UDP responder below, whose answers each test changes) and echo
 * upstreams on 127.0.0.1, 127.0.0.2, 127.0.0.3 and ::1 on one port, so a target key tells
 * which upstream a session reached.
 */
import { describe, expect, test } from "bun:test";
import type { udp } from "bun";
import { promises as dns } from "node:dns";
import { parseConfig } from "../../../src/config/load.ts";
import { Discovery, lookup, nextLookupDelay } from "../../../src/backend/sources/discovery.ts";
import { parseDnsServer } from "../../../src/util/address.ts";
import type { TargetState } from "../../../src/index.ts";

import { captureLogger, dial, echo, HOST, listen, waitFor, type Peer, type Server, exchange } from "../../helpers/net.ts";
import { type RouterUnderTest, startRouter } from "../../helpers/router.ts";

// ---------------------------------------------------------------------------------------------
// A DNS server on 127.0.0.1 (RFC 1035 over UDP: A and AAAA answers with a TTL, an rcode, or
// silence). Written here rather than taken from npm: ~80 lines, no dependency to keep up.

interface Records {
  a?: string[];
  aaaa?: string[];
  /** Seconds, for every record. Default 30. */
  ttl?: number;
  /** 2 = SERVFAIL, 3 = NXDOMAIN. Default 0 (or 3 for a name with no entry). */
  rcode?: number;
  /** The rcode of AAAA queries only, when it differs. */
  aaaaRcode?: number;
  /** Do not answer at all. */
  silent?: boolean;
}

class DnsServer implements Disposable {
  readonly answers = new Map<string, Records>();
  /** `name A` / `name AAAA`, one per query received. */
  readonly queries: string[] = [];
  socket!: udp.Socket<"buffer">;

  get address(): string {
    return `${HOST}:${this.socket.port}`;
  }

  /** A queries of `name` so far: one per lookup (each lookup also asks AAAA). */
  lookups(name: string): number {
    return this.queries.filter((query) => query === `${name} A`).length;
  }

  [Symbol.dispose](): void {
    this.socket.close();
  }
}

async function startDns(): Promise<DnsServer> {
  const server = new DnsServer();
  server.socket = await Bun.udpSocket({ hostname: HOST, port: 0, socket: { data: dnsQuery } });
  (server.socket as unknown as { server: DnsServer }).server = server;
  return server;
}

function dnsQuery(socket: udp.Socket<"buffer">, query: Buffer, port: number, address: string): void {
  const server = (socket as unknown as { server: DnsServer }).server;
  let at = 12;
  const labels: string[] = [];
  while (query[at]! > 0 && at < query.length) {
    labels.push(query.toString("latin1", at + 1, at + 1 + query[at]!));
    at += query[at]! + 1;
  }
  const questionEnd = at + 5; // the root label, QTYPE, QCLASS
  const name = labels.join(".").toLowerCase();
  const type = query.readUInt16BE(at + 1);
  server.queries.push(`${name} ${type === 1 ? "A" : type === 28 ? "AAAA" : type}`);
  const records = server.answers.get(name);
  if (records?.silent) return;
  const rcode = records === undefined ? 3 : ((type === 28 ? records.aaaaRcode : undefined) ?? records.rcode ?? 0);
  const ips = rcode !== 0 ? [] : type === 1 ? (records?.a ?? []) : type === 28 ? (records?.aaaa ?? []) : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // id
  header.writeUInt16BE(0x8180 | rcode, 2); // a response, recursion desired and available
  header.writeUInt16BE(1, 4); // the question
  header.writeUInt16BE(ips.length, 6);
  const answers = ips.map((ip) => {
    const data = type === 1 ? Buffer.from(ip.split(".").map(Number)) : ipv6Bytes(ip);
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    fixed.writeUInt16BE(type, 2);
    fixed.writeUInt16BE(1, 4); // IN
    fixed.writeUInt32BE(records?.ttl ?? 30, 6);
    fixed.writeUInt16BE(data.length, 10);
    return Buffer.concat([fixed, data]);
  });
  socket.send(Buffer.concat([header, query.subarray(12, questionEnd), ...answers]), port, address);
}

function ipv6Bytes(ip: string): Buffer {
  const [head = "", tail] = ip.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  const bytes = Buffer.alloc(16);
  for (const [i, group] of groups.entries()) bytes.writeUInt16BE(parseInt(group, 16), i * 2);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Upstreams on several loopback addresses, one port

type Upstreams = Map<string, Server> & AsyncDisposable & { port: number };

/** Echo servers on each host, all on one port (Linux routes all of 127/8 to lo). */
async function upstreams(hosts: string[]): Promise<Upstreams> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const servers = new Map<string, Server>();
    try {
      const first = listen(echo, { hostname: hosts[0]! });
      servers.set(hosts[0]!, first);
      for (const host of hosts.slice(1)) servers.set(host, listen(echo, { hostname: host, port: first.port }));
      return Object.assign(servers, {
        port: first.port,
        [Symbol.asyncDispose]: async () => void (await Promise.all([...servers.values()].map((server) => server.stop()))),
      });
    } catch {
      await Promise.all([...servers.values()].map((server) => server.stop())); // the port was taken on another address: try another
    }
  }
  throw new Error(`no port free on all of ${hosts.join(", ")}`);
}

/** Sessions each upstream has accepted so far, by host. */
function accepted(servers: Upstreams): Map<string, number> {
  return new Map([...servers].map(([host, server]) => [host, server.peers.length]));
}

/** Sessions each upstream accepted since `before`, by host. */
function since(servers: Upstreams, before: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...servers].map(([host, server]) => [host, server.peers.length - before.get(host)!]));
}

/** A listener on any port and backend `app` with these targets (strings, or inline tables written as such). */
function toml(dnsServer: string | null, targets: string[], backend = "", top = ""): string {
  return (
    (dnsServer === null ? "" : `dns_servers = ["${dnsServer}"]\n`) +
    top +
    `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "app"\n` +
    `[backends.app]\nretries = 0\ntargets = [${targets.map((t) => (t.startsWith("{") ? t : JSON.stringify(t))).join(", ")}]\n${backend}`
  );
}

function targets(router: RouterUnderTest): readonly TargetState[] {
  return router.backends().get("app")!;
}

function keys(router: RouterUnderTest): string[] {
  return targets(router).map((target) => target.key);
}

// ---------------------------------------------------------------------------------------------

describe("pure parts", () => {
  test.each([
    ["10.0.0.2", "10.0.0.2:53"],
    ["127.0.0.1:5353", "127.0.0.1:5353"],
    ["::1", "[::1]:53"],
    ["[::1]:5353", "[::1]:5353"],
  ])("DNS server %p is %p", (input, expected) => {
    expect(parseDnsServer(input)).toBe(expected);
  });

  test.each([
    [30_000, null, 30_000],
    [30_000, 5_000, 5_000],
    [5_000, 300_000, 5_000],
    [30_000, 0, 1_000],
    [30_000, 400, 1_000],
  ])("resolve_interval %p with TTL %p ms: next lookup after %p ms", (interval, ttl, expected) => {
    expect(nextLookupDelay(interval, ttl)).toBe(expected);
  });
});

describe("one lookup against a DNS server", () => {
  test("gets A and AAAA addresses, sorted, with the lowest TTL", async () => {
    using server = await startDns();
    server.answers.set("svc.test", { a: ["127.0.0.3", "127.0.0.10", "127.0.0.2"], aaaa: ["::1"], ttl: 7 });
    expect(await lookup("SVC.test.", [server.address])).toEqual({ addresses: ["127.0.0.2", "127.0.0.3", "127.0.0.10", "::1"], ttl: 7000 });
    server.answers.set("v4.test", { a: ["127.0.0.2"], ttl: 0 });
    expect(await lookup("v4.test", [server.address])).toEqual({ addresses: ["127.0.0.2"], ttl: 0 });
  });

  test("fails on NXDOMAIN, on SERVFAIL for one family, on an empty answer and on silence", async () => {
    using server = await startDns();
    server.answers.set("fail.test", { rcode: 2 });
    server.answers.set("empty.test", {});
    server.answers.set("silent.test", { silent: true });
    await expect(lookup("missing.test", [server.address])).rejects.toThrow("ENOTFOUND");
    await expect(lookup("fail.test", [server.address])).rejects.toThrow("ESERVFAIL");
    await expect(lookup("empty.test", [server.address])).rejects.toThrow("ENOTFOUND (no A or AAAA record)");
    const started = performance.now();
    await expect(lookup("silent.test", [server.address], 300)).rejects.toThrow("timed out after 300ms");
    expect(performance.now() - started).toBeLessThan(2000);
    // A good A answer with a failed AAAA query is a failed lookup: the AAAA set is unknown.
    server.answers.set("half.test", { a: ["127.0.0.2"], aaaaRcode: 2 });
    await expect(lookup("half.test", [server.address])).rejects.toThrow("ESERVFAIL");
    // A name with no AAAA record at all is fine.
    server.answers.set("half.test", { a: ["127.0.0.2"] });
    expect((await lookup("half.test", [server.address])).addresses).toEqual(["127.0.0.2"]);
  });

  test("expand gives each address of a name the target's settings, its name, and an address once", async () => {
    using server = await startDns();
    server.answers.set("a.test", { a: ["127.0.0.1", "127.0.0.2"] });
    server.answers.set("b.test", { a: ["127.0.0.2", "127.0.0.3"] });
    const list = ["127.0.0.1:7000", '{ address = "a.test:7000", weight = 3, backup = true }', "b.test:7000", "gone.test:7000", "unix:/tmp/x.sock"];
    const config = parseConfig(toml(server.address, list), "toml");
    const discovery = new Discovery(captureLogger().logger);
    try {
      await discovery.prefetch(config);
      const expanded = discovery.expand(config.backends.get("app")!.targets);
      expect(
        expanded.map((t) => [t.address.kind === "tcp" ? `${t.address.host}:${t.address.port}` : t.address.path, t.name ?? "-", t.weight, t.backup]),
      ).toEqual([
        ["127.0.0.1:7000", "-", 1, false],
        ["127.0.0.2:7000", "a.test:7000", 3, true],
        ["127.0.0.3:7000", "b.test:7000", 1, false],
        ["/tmp/x.sock", "-", 1, false],
      ]);
    } finally {
      discovery.stop();
    }
  });
});

describe("a router with hostname targets", () => {
  test("new sessions follow added and removed addresses; a session to a removed address finishes normally", async () => {
    using server = await startDns();
    await using up = await upstreams(["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    const P = up.port;
    server.answers.set("svc.test", { a: ["127.0.0.1", "127.0.0.2"], ttl: 1 });
    await using router = await startRouter(toml(server.address, [`svc.test:${P}`]));
    // Resolved before listening: both addresses are targets from the first session on.
    expect(keys(router)).toEqual([`127.0.0.1:${P}`, `127.0.0.2:${P}`]);
    expect(targets(router).map((t) => t.name)).toEqual([`svc.test:${P}`, `svc.test:${P}`]);
    expect(router.matching("svc.test resolved to 127.0.0.1, 127.0.0.2")).toHaveLength(1);

    // A long session on 127.0.0.2, the address about to go.
    let long: Peer | null = null;
    const opened: Peer[] = [];
    try {
      for (let i = 0; i < 4 && long === null; i++) {
        const before = accepted(up);
        const peer = await dial(router.port);
        opened.push(peer);
        peer.write("hello");
        await waitFor(() => peer.bytesIn === 5, 5000, "the echo");
        if (since(up, before)["127.0.0.2"] === 1) long = peer;
      }
      expect(long).not.toBeNull();
      const removed = targets(router).find((t) => t.key === `127.0.0.2:${P}`)!;
      expect(removed.active).toBe(1);

      let before = accepted(up);
      for (let i = 0; i < 4; i++) await exchange(router.port, `first ${i}`);
      expect(since(up, before)).toEqual({ "127.0.0.1": 2, "127.0.0.2": 2, "127.0.0.3": 0 });

      server.answers.set("svc.test", { a: ["127.0.0.1", "127.0.0.3"], ttl: 1 });
      await waitFor(() => keys(router).join() === `127.0.0.1:${P},127.0.0.3:${P}`, 5000, "the new address set");
      expect(router.matching("svc.test now resolves to 127.0.0.1, 127.0.0.3 (added 127.0.0.3; removed 127.0.0.2)")).toHaveLength(1);

      before = accepted(up);
      for (let i = 0; i < 6; i++) await exchange(router.port, `second ${i}`);
      expect(since(up, before)).toEqual({ "127.0.0.1": 3, "127.0.0.2": 0, "127.0.0.3": 3 });

      // The session to the removed address still works, and ends cleanly.
      long!.write(" still here");
      await waitFor(() => long!.text() === "hello still here", 5000, "the long session to echo");
      long!.shutdown();
      await waitFor(() => long!.closed, 5000, "the long session to close");
      expect(long!.closeError).toBeUndefined();
      expect(long!.ended).toBe(true);
      await waitFor(() => removed.active === 0, 2000, "the removed target to be released");
      expect(router.stats()).toMatchObject({ connectFailures: 0, noTarget: 0 });
    } finally {
      for (const peer of opened) peer.terminate();
    }
  });

  test("answers A and AAAA: IPv4 and IPv6 upstreams both get sessions", async () => {
    using server = await startDns();
    await using up = await upstreams(["127.0.0.1", "::1"]);
    server.answers.set("dual.test", { a: ["127.0.0.1"], aaaa: ["::1"] });
    await using router = await startRouter(toml(server.address, [`dual.test:${up.port}`]));
    expect(keys(router)).toEqual([`127.0.0.1:${up.port}`, `[::1]:${up.port}`]);
    const before = accepted(up);
    for (let i = 0; i < 4; i++) await exchange(router.port, `dual ${i}`);
    expect(since(up, before)).toEqual({ "127.0.0.1": 2, "::1": 2 });
  });

  test("a failed lookup keeps the last good set and is logged once until one succeeds", async () => {
    using server = await startDns();
    await using up = await upstreams(["127.0.0.1", "127.0.0.2"]);
    const P = up.port;
    server.answers.set("svc.test", { a: ["127.0.0.1", "127.0.0.2"], ttl: 1 });
    await using router = await startRouter(toml(server.address, [`svc.test:${P}`], 'resolve_interval = "1s"\n'));
    const kept = targets(router);

    server.answers.set("svc.test", { rcode: 2 }); // SERVFAIL
    const failedFrom = server.lookups("svc.test");
    await waitFor(() => server.lookups("svc.test") >= failedFrom + 3, 8000, "three failed lookups");
    expect(router.matching(`svc.test: lookup failed (ESERVFAIL); keeping 127.0.0.1, 127.0.0.2 until a lookup succeeds; retrying every 1s`)).toHaveLength(1);
    expect(router.lines.filter((line) => line.startsWith("warn"))).toHaveLength(1);
    expect(targets(router)).toEqual(kept);
    const before = accepted(up);
    for (let i = 0; i < 2; i++) await exchange(router.port, `while failing ${i}`);
    expect(since(up, before)).toEqual({ "127.0.0.1": 1, "127.0.0.2": 1 });

    server.answers.set("svc.test", { a: ["127.0.0.2"], ttl: 1 });
    await waitFor(() => keys(router).join() === `127.0.0.2:${P}`, 5000, "the set after recovery");
    expect(router.matching("svc.test resolved again: 127.0.0.2 (after ")).toHaveLength(1);
    expect(router.lines.filter((line) => line.startsWith("warn"))).toHaveLength(1);
  });

  test("honours a short TTL (sooner than resolve_interval) but never looks up more than once a second", async () => {
    using server = await startDns();
    await using up = await upstreams(["127.0.0.1", "127.0.0.2"]);
    const P = up.port;
    server.answers.set("ttl.test", { a: ["127.0.0.1"], ttl: 1 });
    await using router = await startRouter(toml(server.address, [`ttl.test:${P}`], 'resolve_interval = "30s"\n'));
    const changed = performance.now();
    server.answers.set("ttl.test", { a: ["127.0.0.2"], ttl: 0 });
    await waitFor(() => keys(router).join() === `127.0.0.2:${P}`, 5000, "the change after the TTL, long before 30s");
    expect(performance.now() - changed).toBeLessThan(3000);
    // TTL 0: the floor of 1 s holds; two more lookups take about 2 s.
    const from = server.lookups("ttl.test");
    const started = performance.now();
    await waitFor(() => server.lookups("ttl.test") >= from + 2, 6000, "two more lookups");
    expect(performance.now() - started).toBeGreaterThan(1800);
  });

  test("a long TTL does not delay a shorter resolve_interval", async () => {
    using server = await startDns();
    server.answers.set("long.test", { a: ["127.0.0.1"], ttl: 3600 });
    await using router = await startRouter(toml(server.address, ["long.test:7000"], 'resolve_interval = "1s"\n'));
    server.answers.set("long.test", { a: ["127.0.0.2"], ttl: 3600 });
    await waitFor(() => keys(router).join() === "127.0.0.2:7000", 4000, "the change after resolve_interval");
  });

  test("a name that does not resolve at start: the router starts without its targets and keeps trying", async () => {
    using server = await startDns();
    await using up = await upstreams(["127.0.0.3"]);
    await using router = await startRouter(toml(server.address, [`late.test:${up.port}`], 'resolve_interval = "1s"\n'));
    expect(keys(router)).toEqual([]);
    expect(
      router.matching("late.test: lookup failed (ENOTFOUND (no A or AAAA record)); no targets from this name until it resolves; retrying every 1s"),
    ).toHaveLength(1);
    await using peer = await dial(router.port);
    await waitFor(() => peer.hungUp, 5000, "a session with no target to close");
    expect(router.stats().noTarget).toBe(1);

    server.answers.set("late.test", { a: ["127.0.0.3"] });
    await waitFor(() => keys(router).length === 1, 5000, "the name to resolve");
    expect(router.matching("late.test resolved again: 127.0.0.3 (after ")).toHaveLength(1);
    await exchange(router.port, "late but here");
    expect(up.get("127.0.0.3")!.peers).toHaveLength(1);
  });

  test("a reload keeps the state of names that stay, resolves new ones ahead, and drops removed ones", async () => {
    using server = await startDns();
    server.answers.set("keep.test", { a: ["127.0.0.1", "127.0.0.2"], ttl: 30 });
    server.answers.set("new.test", { a: ["127.0.0.3"], ttl: 30 });
    server.answers.set("gone.test", { a: ["127.0.0.4"], ttl: 1 });
    await using router = await startRouter(toml(server.address, ["keep.test:7000", "gone.test:7000"], 'resolve_interval = "1s"\n'));
    await waitFor(() => server.lookups("gone.test") >= 2, 4000, "gone.test to be looked up again");
    const kept = targets(router).filter((t) => t.name === "keep.test:7000");
    expect(kept).toHaveLength(2);

    // keep.test stays (with a new weight), gone.test goes: keep.test keeps its target objects
    // and is not looked up because of the reload; gone.test is not looked up any more.
    const keepLookups = server.lookups("keep.test");
    router.reload(parseConfig(toml(server.address, ['{ address = "keep.test:7000", weight = 5 }'], 'resolve_interval = "30s"\n'), "toml"));
    expect(targets(router)).toHaveLength(2);
    for (const [i, target] of targets(router).entries()) expect(target).toBe(kept[i]!);
    expect(targets(router).map((t) => t.weight)).toEqual([5, 5]);
    await Bun.sleep(300); // a lookup in flight at the reload ends
    const goneLookups = server.lookups("gone.test");
    await Bun.sleep(1500);
    expect(server.lookups("gone.test")).toBe(goneLookups);
    expect(server.lookups("keep.test")).toBe(keepLookups);

    // A new name, looked up before the reload applies: its addresses are there at once.
    const next = parseConfig(toml(server.address, ["keep.test:7000", "new.test:7000"]), "toml");
    await router.resolve(next);
    router.reload(next);
    expect(keys(router)).toEqual(["127.0.0.1:7000", "127.0.0.2:7000", "127.0.0.3:7000"]);

    // Other dns_servers: every name is looked up again with them at once; until then the addresses stay.
    using other = await startDns();
    other.answers.set("keep.test", { a: ["127.0.0.5"] });
    other.answers.set("new.test", { a: ["127.0.0.6"] });
    router.reload(parseConfig(toml(other.address, ["keep.test:7000", "new.test:7000"]), "toml"));
    expect(keys(router)).toEqual(["127.0.0.1:7000", "127.0.0.2:7000", "127.0.0.3:7000"]);
    await waitFor(() => keys(router).join() === "127.0.0.5:7000,127.0.0.6:7000", 3000, "the answers of the new servers");
    expect(router.matching(`looking names up with ${other.address}`)).toHaveLength(1);
  });

  test("stop() ends the lookups", async () => {
    using server = await startDns();
    server.answers.set("stop.test", { a: ["127.0.0.1"], ttl: 1 });
    const router = await startRouter(toml(server.address, ["stop.test:7000"], 'resolve_interval = "1s"\n'));
    await waitFor(() => server.lookups("stop.test") >= 2, 4000, "a second lookup");
    await router.stop({ drainTimeout: 0 });
    const after = server.queries.length;
    await Bun.sleep(1500);
    expect(server.queries.length).toBe(after);
  });

  test("IP literals and unix paths are never looked up", async () => {
    using server = await startDns();
    await using router = await startRouter(
      toml(server.address, ["127.0.0.1:7000", "[::1]:7000", "unix:/tmp/tcprouter-dns-test.sock"], 'resolve_interval = "1s"\n'),
    );
    expect(keys(router)).toEqual(["127.0.0.1:7000", "[::1]:7000", "unix:/tmp/tcprouter-dns-test.sock"]);
    await Bun.sleep(1200);
    expect(server.queries).toEqual([]);
  });

  test("without dns_servers, localhost goes through the system resolver", async () => {
    await using up = await upstreams(["127.0.0.1"]);
    const system = (await dns.lookup("localhost", { all: true })).map((entry) => entry.address);
    await using router = await startRouter(toml(null, [`localhost:${up.port}`]));
    expect(keys(router).sort()).toEqual(system.map((ip) => (ip.includes(":") ? `[${ip}]:${up.port}` : `${ip}:${up.port}`)).sort());
    expect(targets(router).every((t) => t.name === `localhost:${up.port}`)).toBe(true);
    if (system.length === 1) {
      await exchange(router.port, "via localhost");
      expect(up.get("127.0.0.1")!.peers).toHaveLength(1);
    }
  });

  test("with dns_servers, localhost still goes through the system resolver", async () => {
    using server = await startDns();
    await using router = await startRouter(toml(server.address, ["localhost:7000"]));
    expect(keys(router)).toContain("127.0.0.1:7000");
    expect(server.queries).toEqual([]);
  });
});
