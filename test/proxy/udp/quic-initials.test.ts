/**
 * A UDP listener in sni mode with synthetic QUIC Initials (test/helpers/quic.ts, no external
 * tools): a hello split over three datagrams is held (bounded) and routed once whole, the held
 * Initials reach the target first and unchanged, later datagrams follow; a hello that never
 * completes ends its flow at hello_timeout; an unknown name with no default is dropped.
 */
import { describe, expect, test } from "bun:test";
import { waitFor } from "../../helpers/net.ts";
import { helloDatagrams, helloHandshake } from "../../helpers/quic.ts";
import { startRouter } from "../../helpers/router.ts";
import { udpClient, udpTarget } from "../../helpers/udp.ts";
import type { FlowView, UdpListenerView } from "../../../src/proxy/handle.ts";

const listenerOf = (router: { view: { udpListeners?: readonly UdpListenerView[] } }) => router.view.udpListeners![0]!;
const dcid = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

async function sniRouter(a: string, b: string, extra = "") {
  return startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
mode = "sni"
hello_timeout = "300ms"
${extra}
[[listeners.routes]]
server_names = ["a.example.com"]
backend = "a"
[[listeners.routes]]
server_names = ["b.example.com"]
backend = "b"
[backends.a]
targets = ["${a}"]
[backends.b]
targets = ["${b}"]
`);
}

describe("QUIC Initials on a UDP listener (sni mode)", () => {
  // Regression: the QUIC reader unmasked each Initial's header in a Buffer's slice(), a view, so
  // the held Initials went out with their header protection removed and the target dropped them
  // (real clients got through only on retransmits). The listener now hands the reader a
  // Uint8Array view, whose slice() copies; this test compares the bytes the target got.
  test("holds the Initials until the hello is whole, then sends them first and unchanged to the name's target", async () => {
    await using a = await udpTarget("A:");
    await using b = await udpTarget("B:");
    await using router = await sniRouter(a.address, b.address);
    const initials = helloDatagrams(helloHandshake({ serverName: "b.example.com", alpn: ["h3"] }), 3, { dcid });
    await using client = await udpClient(router.port);
    client.send(initials[0]!);
    client.send(initials[1]!);
    await Bun.sleep(50);
    expect(b.received).toHaveLength(0); // not routed yet
    expect([...listenerOf(router).flows][0]!.state).toBe("preface");
    client.send(initials[2]!);
    client.send("after");
    await waitFor(() => b.received.length === 4, 2000, "four datagrams at b");
    expect(b.received.map((r) => Buffer.from(r.data).toString("hex"))).toEqual([
      ...initials.map((d) => Buffer.from(d).toString("hex")),
      Buffer.from("after").toString("hex"),
    ]);
    expect(a.received).toHaveLength(0);
    const flow = [...listenerOf(router).flows][0] as FlowView;
    expect(flow.sni).toBe("b.example.com");
    expect(flow.backend.name).toBe("b");
    expect((await client.next()).subarray(0, 2).toString()).toBe("B:");
  });

  test("a hello that never completes ends its flow at hello_timeout; no target saw anything", async () => {
    await using a = await udpTarget("A:");
    await using b = await udpTarget("B:");
    await using router = await sniRouter(a.address, b.address);
    const closed: FlowView[] = [];
    router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
    const initials = helloDatagrams(helloHandshake({ serverName: "a.example.com" }), 3, { dcid });
    await using client = await udpClient(router.port);
    client.send(initials[0]!);
    await waitFor(() => closed.length === 1, 2000, "the flow to end");
    expect(closed[0]!.reason).toBe("hello_timeout");
    expect(a.received.length + b.received.length).toBe(0);
    expect(listenerOf(router).dropped.quic_error).toBe(1);
  });

  test("an unknown name without a default is dropped and logged; a default route takes it when there is one", async () => {
    await using a = await udpTarget("A:");
    await using b = await udpTarget("B:");
    const unknown = helloDatagrams(helloHandshake({ serverName: "c.example.com" }), 1, { dcid })[0]!;
    {
      await using router = await sniRouter(a.address, b.address);
      await using client = await udpClient(router.port);
      client.send(unknown);
      await waitFor(() => listenerOf(router).dropped.no_route === 1, 2000, "a no_route drop");
      expect(router.matching('no route for QUIC server name "c.example.com"')).toHaveLength(1);
      expect(listenerOf(router).active).toBe(0);
    }
    {
      await using router = await sniRouter(a.address, b.address, 'backend = "a"');
      await using client = await udpClient(router.port);
      client.send(unknown);
      expect((await client.next()).subarray(0, 2).toString()).toBe("A:");
    }
  });
});
