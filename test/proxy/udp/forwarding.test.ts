/**
 * UDP listeners end to end with Bun UDP sockets on 127.0.0.1: exact datagram bytes both ways,
 * boundaries kept, one flow (and one upstream socket) per client address:port, flows ended by
 * `responses` and by the idle timeout, limits and ACLs that drop and count, a reload that keeps
 * flows on their targets, drain on stop, and bad datagrams that never take the router down.
 * Flows and descriptors go back to where they started after each test.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { expectTimeoutAcrossStall, fdCount, hasIPv6Loopback, waitFor } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";
import { udpClient, udpTarget } from "../../helpers/udp.ts";
import { createRouter, parseConfig } from "../../../src/index.ts";
import type { FlowView, UdpListenerView } from "../../../src/proxy/handle.ts";

let fdsBefore = 0;
beforeEach(() => {
  fdsBefore = fdCount();
});
afterEach(async () => {
  // every socket of the test (router, targets, clients, flows) is closed again
  await waitFor(() => fdCount() <= fdsBefore, 2000, `descriptors back to ${fdsBefore} (now ${fdCount()})`);
});

function config(targets: string[], extra = "", backendExtra = ""): string {
  return `
[[listeners]]
name = "dns"
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
${extra}
[backends.dns]
targets = [${targets.map((t) => `"${t}"`).join(", ")}]
${backendExtra}
`;
}

function udpListener(router: { view: { udpListeners?: readonly UdpListenerView[] } }): UdpListenerView {
  return router.view.udpListeners![0]!;
}

describe("UDP forwarding", () => {
  test("forwards datagrams unchanged both ways, one datagram in, one out", async () => {
    await using target = await udpTarget("A:");
    await using router = await startRouter(config([target.address]));
    await using client = await udpClient(router.port);
    const payloads = [Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), Buffer.from("x".repeat(1400)), crypto.getRandomValues(Buffer.alloc(8000))];
    for (const payload of payloads) client.send(payload);
    const replies = [];
    for (let i = 0; i < payloads.length; i++) replies.push(await client.next());
    expect(target.received.map((r) => r.data.toString("hex"))).toEqual(payloads.map((p) => p.toString("hex")));
    expect(replies.map((r) => r.toString("hex"))).toEqual(payloads.map((p) => Buffer.concat([Buffer.from("A:"), p]).toString("hex")));
    const listener = udpListener(router);
    expect(listener.active).toBe(1);
    expect(listener.datagramsUp).toBe(4);
    expect(listener.datagramsDown).toBe(4);
    const [flow] = [...listener.flows] as FlowView[];
    expect(flow!.up.datagrams).toBe(4);
    expect(flow!.down.bytes).toBe(payloads.reduce((n, p) => n + p.length + 2, 0));
  });

  test("gives each client address:port its own flow and upstream socket, and answers each client", async () => {
    await using target = await udpTarget("T:");
    await using router = await startRouter(config([target.address]));
    await using one = await udpClient(router.port);
    await using two = await udpClient(router.port);
    one.send("from one");
    two.send("from two");
    one.send("again one");
    expect((await one.next()).toString()).toBe("T:from one");
    expect((await two.next()).toString()).toBe("T:from two");
    expect((await one.next()).toString()).toBe("T:again one");
    expect(udpListener(router).active).toBe(2);
    // two upstream sockets: the target saw two source ports, one per flow
    const ports = new Set(target.received.map((r) => r.port));
    expect(ports.size).toBe(2);
    expect(target.received.filter((r) => r.data.toString().includes("one")).map((r) => r.port)).toHaveLength(2);
  });

  test("round-robins new flows over the targets and keeps a flow on its target", async () => {
    await using a = await udpTarget("A:");
    await using b = await udpTarget("B:");
    await using router = await startRouter(config([a.address, b.address]));
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      await using client = await udpClient(router.port);
      client.send("q");
      client.send("q2");
      const first = (await client.next()).toString();
      const second = (await client.next()).toString();
      expect(second.slice(0, 2)).toBe(first.slice(0, 2));
      seen.push(first.slice(0, 1));
    }
    expect(seen.sort()).toEqual(["A", "A", "B", "B"]);
  });

  test("ends a flow after `responses` replies, with one access-log-shaped observer call", async () => {
    await using target = await udpTarget("", (data) => [data, data]); // answers twice
    const closed: FlowView[] = [];
    await using router = await startRouter(config([target.address], "responses = 1"));
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    await using client = await udpClient(router.port);
    client.send("ping");
    expect((await client.next()).toString()).toBe("ping");
    await waitFor(() => closed.length === 1, 2000, "the flow to end");
    expect(closed[0]!.reason).toBe("responses");
    expect(closed[0]!.down.datagrams).toBe(1);
    expect(udpListener(router).active).toBe(0);
    // the second answer reached a closed upstream socket: never the client
    expect(await client.silent(100)).toBe(true);
    expect(router.target(target.port, "dns").active).toBe(0);
  });

  // Regression: a flow ended after `responses` replies in all, so a client with two queries in
  // flight on one port (dnsperf, a stub resolver) lost the second answer. As nginx's
  // proxy_responses, it is now `responses` replies per datagram the client sent.
  test("with responses = 1, every query in flight on one client port is answered before the flow ends", async () => {
    const held: Buffer[] = [];
    // The target answers only once it has both queries, so both are in flight at once.
    await using target = await udpTarget("", (data) => {
      held.push(data);
      return held.length === 2 ? held.splice(0) : [];
    });
    const closed: FlowView[] = [];
    await using router = await startRouter(config([target.address], "responses = 1"));
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    await using client = await udpClient(router.port);
    client.send("q1");
    client.send("q2");
    const answers = [(await client.next()).toString(), (await client.next()).toString()];
    expect(answers.sort()).toEqual(["q1", "q2"]);
    await waitFor(() => closed.length === 1, 2000, "the flow to end after both answers");
    expect(closed[0]!.reason).toBe("responses");
    expect([closed[0]!.up.datagrams, closed[0]!.down.datagrams]).toEqual([2, 2]);
  });

  test("ends an idle flow after idle_timeout and frees its place on the target", async () => {
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address], 'idle_timeout = "200ms"'));
    await using client = await udpClient(router.port);
    client.send("x");
    await client.next();
    expect(router.target(target.port, "dns").active).toBe(1);
    const reasons: string[] = [];
    router.view.observe({ flowClosed: (flow) => void reasons.push(flow.reason!) });
    await waitFor(() => udpListener(router).active === 0, 2000, "the idle flow to end");
    expect(reasons).toEqual(["idle_timeout"]);
    expect(router.target(target.port, "dns").active).toBe(0);
    // the next datagram of the same client starts a new flow
    client.send("y");
    expect((await client.next()).toString()).toBe("y");
    expect(udpListener(router).accepted).toBe(2);
  });

  test("a flow's idle timeout is timed by the clock: never early, and not stretched by a stalled event loop", async () => {
    // idle_timeout 1s: the flow clock ticks every 100 ms. The router runs in this process, so
    // a busy loop here stalls its sweeps; counted sweeps would need ten more after the stall.
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address], 'idle_timeout = "1s"'));
    await using client = await udpClient(router.port);
    let endedAt = 0;
    router.view.observe({ flowClosed: () => void (endedAt = performance.now()) });
    client.send("x");
    expect((await client.next()).toString()).toBe("x");
    await expectTimeoutAcrossStall(performance.now(), () => endedAt, "the idle flow to end");
    expect(udpListener(router).active).toBe(0);
  });

  test("drops and counts datagrams of new clients over max_flows and max_flows_per_ip", async () => {
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address], "max_flows = 2\nmax_flows_per_ip = 1"));
    await using one = await udpClient(router.port);
    await using two = await udpClient(router.port);
    one.send("1");
    await one.next();
    two.send("2"); // same IP, second flow: over max_flows_per_ip
    expect(await two.silent(100)).toBe(true);
    const listener = udpListener(router);
    expect(listener.dropped.max_flows_per_ip).toBe(1);
    expect(listener.active).toBe(1);
    one.send("3"); // its own flow goes on
    expect((await one.next()).toString()).toBe("3");
    expect(router.matching("max_flows_per_ip 1")).toHaveLength(1);
  });

  test("drops datagrams of denied clients before any flow or upstream socket", async () => {
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address], 'deny = ["127.0.0.0/8"]'));
    await using client = await udpClient(router.port);
    client.send("no");
    expect(await client.silent(150)).toBe(true);
    expect(target.received).toHaveLength(0);
    expect(udpListener(router).dropped.denied).toBe(1);
    expect(udpListener(router).denied).toBe(1);
    expect(udpListener(router).accepted).toBe(0);
  });

  test("a reload keeps the listener's socket and its flows on their targets", async () => {
    await using a = await udpTarget("A:");
    await using b = await udpTarget("B:");
    await using router = await startRouter(config([a.address]));
    await using client = await udpClient(router.port);
    client.send("1");
    expect((await client.next()).toString()).toBe("A:1");
    const summary = router.reload(parseConfig(config([b.address]).replace("127.0.0.1:0", `127.0.0.1:0`), "toml"));
    expect(summary.kept).toHaveLength(1);
    client.send("2");
    expect((await client.next()).toString()).toBe("A:2"); // the open flow stays on a
    await using other = await udpClient(router.port);
    other.send("3");
    expect((await other.next()).toString()).toBe("B:3"); // a new flow goes to b
  });

  test("stop drains: open flows go on, new clients are dropped, the rest closed at the deadline", async () => {
    await using target = await udpTarget("");
    const router = await createRouter(parseConfig(config([target.address]), "toml"));
    try {
      await using client = await udpClient(router.listeners[0]!.port);
      client.send("a");
      await client.next();
      const stopping = router.stop({ drainTimeout: 300 });
      client.send("b");
      expect((await client.next()).toString()).toBe("b"); // still forwarded while draining
      await using late = await udpClient(router.listeners[0]!.port);
      late.send("late");
      expect(await late.silent(100)).toBe(true);
      const summary = await stopping;
      expect(summary.closed).toBe(1);
      expect(router.view.udpListeners).toHaveLength(0);
    } finally {
      await router.stop({ drainTimeout: 0 });
    }
  });

  test("garbage and odd datagrams never take the router down", async () => {
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address]));
    const clients = [];
    for (let i = 0; i < 20; i++) clients.push(await udpClient(router.port));
    for (const [i, client] of clients.entries()) {
      client.send(crypto.getRandomValues(Buffer.alloc((i * 997) % 9000)));
      client.send(Buffer.alloc(0));
    }
    await waitFor(() => target.received.length === 40, 2000, "every datagram at the target");
    for (const client of clients) client.close();
    await using check = await udpClient(router.port);
    check.send("still here");
    expect((await check.next()).toString()).toBe("still here");
  });
});

describe("UDP listeners shared by workers (reusePort)", () => {
  test("two routers bind one UDP port with SO_REUSEPORT; each client stays with one of them", async () => {
    await using target = await udpTarget("");
    const probe = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
    const port = probe.port;
    probe.close();
    const toml = config([target.address]).replace("127.0.0.1:0", `127.0.0.1:${port}`);
    const one = await createRouter(parseConfig(toml, "toml"), { reusePort: true });
    const two = await createRouter(parseConfig(toml, "toml"), { reusePort: true });
    try {
      const clients = [];
      for (let i = 0; i < 16; i++) clients.push(await udpClient(port));
      for (const client of clients) client.send("a");
      for (const client of clients) expect((await client.next()).toString()).toBe("a");
      for (const client of clients) client.send("b");
      for (const client of clients) expect((await client.next()).toString()).toBe("b");
      const flows = (router: typeof one) => router.view.udpListeners![0]!;
      // every client has exactly one flow, in one process or the other, and both took some
      expect(flows(one).active + flows(two).active).toBe(16);
      expect(flows(one).accepted + flows(two).accepted).toBe(16);
      expect(Math.min(flows(one).active, flows(two).active)).toBeGreaterThan(0);
      for (const client of clients) client.close();
    } finally {
      await one.stop({ drainTimeout: 0 });
      await two.stop({ drainTimeout: 0 });
    }
  });
});

describe("UDP listeners across reloads", () => {
  test("a reload that removes the listener ends its flows (listener_closed); one whose bind fails changes nothing", async () => {
    await using target = await udpTarget("");
    await using router = await startRouter(config([target.address]));
    await using client = await udpClient(router.port);
    client.send("x");
    await client.next();
    // a new UDP listener on a port that is taken: the reload throws and the open flow goes on
    await using squatter = await udpTarget("");
    const taken = `${config([target.address])}\n[[listeners]]\nname = "second"\nlisten = "${squatter.address}"\nprotocol = "udp"\nbackend = "dns"\n`;
    expect(() => router.reload(parseConfig(taken, "toml"))).toThrow(/cannot listen on udp 127\.0\.0\.1:\d+: .*in use/i);
    client.send("still");
    expect((await client.next()).toString()).toBe("still");
    const reasons: string[] = [];
    router.view.observe({ flowClosed: (flow) => void reasons.push(flow.reason!) });
    const tcpOnly = `[[listeners]]\nlisten = "127.0.0.1:0"\nbackend = "dns"\n[backends.dns]\ntargets = ["127.0.0.1:1"]\n`;
    const summary = router.reload(parseConfig(tcpOnly, "toml"));
    expect(summary.closed).toEqual([`udp 127.0.0.1:${router.port}`]);
    expect(reasons).toEqual(["listener_closed"]);
    expect(router.view.udpListeners).toHaveLength(0);
  });
});

describe.skipIf(!(await hasIPv6Loopback()))("UDP over IPv6", () => {
  test("forwards between IPv6 clients and IPv6 targets", async () => {
    const received: string[] = [];
    const target = await Bun.udpSocket({
      hostname: "::1",
      port: 0,
      socket: {
        data(s, data, port, address) {
          received.push(address);
          s.send(Buffer.concat([Buffer.from("6:"), data]), port, address);
        },
      },
    });
    try {
      await using router = await startRouter(config([`[::1]:${target.port}`]).replace("127.0.0.1:0", "[::1]:0"));
      const replies: string[] = [];
      const client = await Bun.udpSocket({
        hostname: "::1",
        port: 0,
        connect: { hostname: "::1", port: router.port },
        socket: { data: (_s, data) => void replies.push(data.toString()) },
      });
      client.send("hi");
      await waitFor(() => replies.length === 1, 2000, "the reply");
      expect(replies).toEqual(["6:hi"]);
      expect(received).toEqual(["::1"]);
      expect([...udpListener(router).flows][0]!.clientHost).toBe("::1");
      client.close();
    } finally {
      target.close();
    }
  });
});
