/**
 * The Sentinel target source: RESP parsing and the majority rule (pure), and a router that
 * follows fake sentinels (Bun.listen peers that speak just enough RESP) by event and by poll.
 * The real Redis Sentinel tests are in test/proxy/sentinel-failover.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { majority, masterAddress, promotedTo, switchedTo } from "../../../src/backend/sources/sentinel.ts";
import { parseResp, RespError, type Resp } from "../../../src/protocol/resp.ts";
import { parseConfig, ConfigError } from "../../../src/config/load.ts";
import { echo, listen, type Server, waitFor } from "../../helpers/net.ts";
import { fakeSentinel, publish, type FakeState } from "../../helpers/replication.ts";
import { startRouter } from "../../helpers/router.ts";
import { type SourceView, statusOf } from "../../../src/backend/sources/source.ts";

/** The fields the Sentinel source reports for the backend `redis` (what /status shows under `sentinel`). */
const sentinelOf = (sources: readonly SourceView[]) => statusOf(sources, "redis").find((status) => status.kind === "sentinel")?.fields;

const tcp = (port: number) => ({ kind: "tcp", host: "127.0.0.1", port }) as const;

describe("parseResp", () => {
  const cases: [string, string, Resp][] = [
    ["a simple string", "+OK\r\n", "OK"],
    ["an integer", ":42\r\n", 42],
    ["a bulk string", "$5\r\nhello\r\n", "hello"],
    ["a null bulk string", "$-1\r\n", null],
    ["a null array", "*-1\r\n", null],
    ["an address reply", "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", ["127.0.0.1", "6379"]],
    ["a pub/sub message", "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$9\r\nm a 1 b 2\r\n", ["message", "+switch-master", "m a 1 b 2"]],
  ];
  for (const [name, text, value] of cases) test(`parses ${name}`, () => expect(parseResp(Buffer.from(text))).toEqual({ value, end: text.length }));

  test("an error reply is a RespError", () => expect(parseResp(Buffer.from("-NOAUTH x\r\n"))!.value).toEqual(new RespError("NOAUTH x")));

  test("an incomplete reply is null at every cut", () => {
    const text = "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n";
    for (let cut = 0; cut < text.length; cut++) expect(parseResp(Buffer.from(text.slice(0, cut)))).toBeNull();
  });

  test("bytes that are not RESP throw", () => {
    expect(() => parseResp(Buffer.from("HTTP/1.1 200 OK\r\n"))).toThrow("not a RESP reply");
    expect(() => parseResp(Buffer.from("$x\r\n"))).toThrow('bad length "x"');
  });
});

describe("answers", () => {
  test("masterAddress reads an address reply, and nothing else", () => {
    expect(masterAddress(["127.0.0.1", "6379"])).toEqual(tcp(6379));
    for (const bad of [null, ["127.0.0.1"], ["127.0.0.1", "0"], ["127.0.0.1", "x"], ["", "1"], "OK"]) expect(masterAddress(bad as never)).toBeNull();
  });

  test("switchedTo takes the new address of our master's event only", () => {
    expect(switchedTo("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster")).toEqual(tcp(6380));
    expect(switchedTo("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster")).toBeNull();
    expect(switchedTo("mymaster 127.0.0.1 6379", "mymaster")).toBeNull();
  });

  test("promotedTo takes the promoted replica of our master only", () => {
    expect(promotedTo("slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379", "mymaster")).toEqual(tcp(6380));
    expect(promotedTo("slave 127.0.0.1:6380 127.0.0.1 6380 @ other 127.0.0.1 6379", "mymaster")).toBeNull();
    expect(promotedTo("master mymaster 127.0.0.1 6379", "mymaster")).toBeNull();
  });

  test("majority needs more than half of the sentinels asked, not of those that answered", () => {
    expect(majority([tcp(1), tcp(1), tcp(2)], 3)).toEqual(tcp(1));
    expect(majority([tcp(1), null, null], 3)).toBeNull();
    expect(majority([tcp(1), tcp(2), null], 3)).toBeNull();
    expect(majority([tcp(1), tcp(1), null], 3)).toEqual(tcp(1));
    expect(majority([tcp(1), tcp(1)], 4)).toBeNull();
  });
});

describe("sentinel config", () => {
  const LISTENER = '[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "redis"\n';
  const errorsOf = (text: string) => {
    try {
      parseConfig(LISTENER + text, "toml");
    } catch (error) {
      if (error instanceof ConfigError) return error.errors;
      throw error;
    }
    throw new Error("accepted");
  };
  test("errors name their path", () => {
    expect(errorsOf('[backends.redis]\nsentinel = { master = "m", sentinels = [] }\n')).toEqual([
      'backends.redis.sentinel.sentinels: expected at least one sentinel, such as ["127.0.0.1:26379"]',
    ]);
    expect(errorsOf('[backends.redis]\nsentinel = { sentinels = ["127.0.0.1:26379"], poll = "1s" }\n')).toEqual([
      'backends.redis.sentinel.master: missing (the master name the sentinels monitor, e.g. "mymaster")',
      "backends.redis.sentinel.poll: unknown key (expected one of: master, sentinels, poll_interval, timeout, auth)",
    ]);
    expect(errorsOf('[backends.redis]\ntargets = ["127.0.0.1:6379"]\nsentinel = { master = "m", sentinels = ["127.0.0.1:26379"] }\n')).toEqual([
      "backends.redis.targets: not with sentinel (the sentinels name the target)",
    ]);
    expect(errorsOf("[backends.redis]\n")).toEqual(['backends.redis.targets: missing (a list of addresses such as ["127.0.0.1:6379"])']);
  });

  test("defaults apply", () => {
    const config = parseConfig(LISTENER + '[backends.redis]\nsentinel = { master = "m", sentinels = ["127.0.0.1:26379"] }\n', "toml");
    expect(config.backends.get("redis")!.sentinel).toEqual({ master: "m", sentinels: [tcp(26379)], pollInterval: 1000, timeout: 1000, auth: null });
    expect(config.backends.get("redis")!.targets).toEqual([]);
  });
});

// ── A router following fake sentinels ───────────────────────────────────────────────────────

const fakes: { stop(closeActive: boolean): void }[] = [];
const servers: Server[] = [];
afterEach(async () => {
  for (const fake of fakes.splice(0)) fake.stop(true);
  for (const server of servers.splice(0)) await server.stop();
});

function sentinelConfig(ports: number[], poll = "1m"): string {
  return `[[listeners]]
listen = "127.0.0.1:0"
backend = "redis"
[backends.redis]
sentinel = { master = "mymaster", sentinels = [${ports.map((p) => `"127.0.0.1:${p}"`).join(", ")}], poll_interval = "${poll}", timeout = "300ms" }
`;
}

describe("a router following fake sentinels", () => {
  test("starts with the majority's primary, switches at once on +switch-master and closes sessions on the old one", async () => {
    const a = listen(echo);
    const b = listen(echo);
    servers.push(a, b);
    const states: FakeState[] = [0, 1, 2].map(() => ({ master: a.port, subscribers: [], asked: 0 }));
    states[2]!.master = b.port; // one sentinel disagrees: the majority wins
    const ports = states.map((state) => fakeSentinel(state, fakes));
    await using router = await startRouter(sentinelConfig(ports));
    expect(
      router
        .backends()
        .get("redis")!
        .map((t) => t.key),
    ).toEqual([`127.0.0.1:${a.port}`]);
    await waitFor(() => states.every((s) => s.subscribers.length === 1), 3000, "a subscription on every sentinel");

    const kept = await Bun.connect({ hostname: "127.0.0.1", port: router.port, socket: { data() {}, close() {}, error() {} } });
    await waitFor(() => a.peers.length === 1, 3000, "the session on the first primary");
    const closed = a.peers[0]!.whenClosed;
    publish(states[1]!, a.port, b.port);
    await waitFor(() => router.backends().get("redis")![0]?.key === `127.0.0.1:${b.port}`, 1000, "the switch on the event");
    await closed;
    expect(router.matching(`moved from 127.0.0.1:${a.port} to 127.0.0.1:${b.port} (+switch-master from sentinel 127.0.0.1:${ports[1]})`)).toHaveLength(1);
    expect(router.matching(`closed 1 session on 127.0.0.1:${a.port}`)).toHaveLength(1);
    expect(sentinelOf(router.view.sources)).toMatchObject({
      master: "mymaster",
      primary: `127.0.0.1:${b.port}`,
      switches: 1,
      subscribed: 3,
      sentinels: 3,
    });
    kept.terminate();
  });

  test("+promoted-slave switches as +switch-master does, before it", async () => {
    const a = listen(echo);
    const b = listen(echo);
    servers.push(a, b);
    const states: FakeState[] = [0, 1, 2].map(() => ({ master: a.port, subscribers: [], asked: 0 }));
    await using router = await startRouter(sentinelConfig(states.map((state) => fakeSentinel(state, fakes))));
    await waitFor(() => states.every((s) => s.subscribers.length === 1), 3000, "subscriptions");
    const payload = `slave 127.0.0.1:${b.port} 127.0.0.1 ${b.port} @ mymaster 127.0.0.1 ${a.port}`;
    states[2]!.subscribers[0]!.write(`*3\r\n$7\r\nmessage\r\n$15\r\n+promoted-slave\r\n$${payload.length}\r\n${payload}\r\n`);
    await waitFor(() => router.backends().get("redis")![0]?.key === `127.0.0.1:${b.port}`, 1000, "the switch on the promotion");
    publish(states[0]!, a.port, b.port); // the +switch-master that follows changes nothing
    await Bun.sleep(50);
    expect(sentinelOf(router.view.sources)?.switches).toBe(1);
  });

  test("polls as the fallback: a majority answer that changed switches without an event", async () => {
    const a = listen(echo);
    const b = listen(echo);
    servers.push(a, b);
    const states: FakeState[] = [0, 1, 2].map(() => ({ master: a.port, subscribers: [], asked: 0 }));
    await using router = await startRouter(
      sentinelConfig(
        states.map((state) => fakeSentinel(state, fakes)),
        "100ms",
      ),
    );
    expect(
      router
        .backends()
        .get("redis")!
        .map((t) => t.key),
    ).toEqual([`127.0.0.1:${a.port}`]);
    states[0]!.master = b.port; // one sentinel alone does not move it
    await waitFor(() => states[1]!.asked >= 3, 3000, "a few polls");
    expect(router.backends().get("redis")![0]!.key).toBe(`127.0.0.1:${a.port}`);
    states[1]!.master = b.port;
    await waitFor(() => router.backends().get("redis")![0]?.key === `127.0.0.1:${b.port}`, 3000, "the switch by poll");
    expect(router.matching("(sentinels polled)")).toHaveLength(1);
  });

  test("without a majority at start the backend has no target until one forms", async () => {
    const a = listen(echo);
    servers.push(a);
    const states: FakeState[] = [0, 1, 2].map(() => ({ master: null, subscribers: [], asked: 0 }));
    states[0]!.master = a.port;
    await using router = await startRouter(
      sentinelConfig(
        states.map((state) => fakeSentinel(state, fakes)),
        "100ms",
      ),
    );
    expect(router.backends().get("redis")).toEqual([]);
    expect(router.matching("no majority of sentinels names a primary for mymaster")).toHaveLength(1);
    states[1]!.master = a.port;
    await waitFor(() => router.backends().get("redis")!.length === 1, 3000, "the primary once a majority agrees");
  });
});
