/**
 * DNS through a UDP listener to two real dnsmasq targets on loopback, each answering a.test
 * with its own address so the test sees which one answered: new flows are spread over both,
 * a target that stops is marked down by a health check over UDP (a DNS query in hex) and the
 * answers keep coming from the other, ICMP port unreachable ejects a target passively, and a
 * lost reply does not leak a flow (it ends after the idle timeout and counts against the target).
 */
import { describe, expect, test } from "bun:test";
import { fdCount, waitFor } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";
import { dig, dnsQuery, dnsTarget, hasDnsTools, udpClient, udpTarget } from "../../helpers/udp.ts";
import type { FlowView, UdpListenerView } from "../../../src/proxy/handle.ts";

const listenerOf = (router: { view: { udpListeners?: readonly UdpListenerView[] } }) => router.view.udpListeners![0]!;

describe.skipIf(!hasDnsTools())("DNS over a UDP listener (dnsmasq, dig)", () => {
  test("answers from both targets, and only from the healthy one after the other stops", async () => {
    const fds = fdCount();
    await using a = await dnsTarget("a.test", "10.0.0.1");
    await using b = await dnsTarget("a.test", "10.0.0.2");
    const query = dnsQuery("a.test").toString("hex");
    await using router = await startRouter(`
[[listeners]]
name = "dns"
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
responses = 1
idle_timeout = "1s"

[backends.dns]
targets = ["${a.address}", "${b.address}"]
health = { interval = "200ms", timeout = "150ms", rise = 1, fall = 1, steps = [{ send_hex = "${query}" }, { expect_hex = "4a4a" }] }
`);
    const closed: FlowView[] = [];
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) answers.push(await dig(router.port, "a.test"));
    expect(answers.sort()).toEqual(["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]);
    await waitFor(() => closed.length === 4, 2000, "four flows to end");
    expect(closed.map((flow) => flow.reason)).toEqual(["responses", "responses", "responses", "responses"]);
    expect(listenerOf(router).active).toBe(0);

    await b.stop();
    await waitFor(() => !router.target(b.port, "dns").healthy, 3000, "the health check to mark b down");
    expect(router.matching(`target ${b.address} is down`).length).toBe(1);
    for (let i = 0; i < 3; i++) expect(await dig(router.port, "a.test")).toBe("10.0.0.1");
    await waitFor(() => listenerOf(router).active === 0, 2000, "flows back to 0");
    expect(router.target(a.port, "dns").healthy).toBe(true);
    await router[Symbol.asyncDispose]();
    await a.stop();
    await waitFor(() => fdCount() <= fds, 2000, "descriptors back");
  }, 20_000);

  test("a lost reply ends its flow after the idle timeout and counts as a failure of the target", async () => {
    await using silent = await udpTarget("", () => []);
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
responses = 1
idle_timeout = "300ms"
[backends.dns]
targets = ["${silent.address}"]
`);
    await using client = await udpClient(router.port);
    client.send(dnsQuery("a.test"));
    await waitFor(() => silent.received.length === 1, 2000, "the query at the target");
    expect(listenerOf(router).active).toBe(1);
    const closed: FlowView[] = [];
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    await waitFor(() => listenerOf(router).active === 0, 2000, "the flow to end");
    expect(closed[0]!.reason).toBe("idle_timeout");
    expect(closed[0]!.detail).toContain("no reply");
    expect(router.target(silent.port, "dns").connectFailures).toBe(1);
    expect(router.target(silent.port, "dns").active).toBe(0);
  });

  test("ICMP port unreachable ends the flow and ejects the target (max_fails); the next flows go to the other", async () => {
    const gone = await udpTarget("");
    const goneAddress = gone.address;
    const gonePort = gone.port;
    gone.close(); // nothing listens there now: the kernel answers port unreachable
    await using live = await udpTarget("L:");
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
[backends.dns]
targets = ["${goneAddress}", "${live.address}"]
max_fails = 1
fail_timeout = "10s"
`);
    const closed: FlowView[] = [];
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    await using first = await udpClient(router.port);
    first.send("q"); // round-robin: the first flow goes to the dead target
    await waitFor(() => closed.length === 1, 2000, "the flow to end on port unreachable");
    expect(closed[0]!.reason).toBe("port_unreachable");
    expect(router.target(gonePort, "dns").healthy).toBe(false);
    for (let i = 0; i < 3; i++) {
      await using client = await udpClient(router.port);
      client.send("q");
      expect((await client.next()).toString()).toBe("L:q");
    }
  });
});
