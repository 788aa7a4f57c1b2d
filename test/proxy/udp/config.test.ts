/**
 * The config of UDP listeners: defaults, the TCP-only keys refused with one error each at their
 * path, the UDP keys refused on TCP listeners, what their backends may not have, a TCP and a
 * UDP listener on one address, `check`'s line for a UDP listener, and the observers' view of
 * a flow (access log line, metrics, /status).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../../../src/index.ts";
import { checkAddressClashes } from "../../../src/config/address-clash.ts";
import { DEFAULTS } from "../../../src/config/defaults.ts";
import { AccessLog } from "../../../src/observe/access-log.ts";
import { Metrics } from "../../../src/observe/metrics.ts";
import { status } from "../../../src/observe/admin.ts";
import { encodeProxyV2 } from "../../../src/protocol/proxy-protocol.ts";
import { run, waitFor } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";
import { udpClient, udpTarget } from "../../helpers/udp.ts";

function errorsOf(toml: string): string[] {
  try {
    parseConfig(toml, "toml");
  } catch (error) {
    if (error instanceof ConfigError) return error.message.split("\n").map((line) => line.trim());
    throw error;
  }
  return [];
}

const BACKEND = `
[backends.dns]
targets = ["127.0.0.1:5353"]
`;

describe("UDP listener config", () => {
  test("defaults: 60 s idle timeout, no limits, responses off", () => {
    const config = parseConfig(`[[listeners]]\nlisten = "127.0.0.1:53"\nprotocol = "udp"\nbackend = "dns"\n${BACKEND}`, "toml");
    const listener = config.listeners[0]!;
    expect(listener.protocol).toBe("udp");
    expect(listener.idleTimeout).toBe(DEFAULTS.udp.idleTimeout);
    expect(listener.udp).toEqual({ maxFlows: 0, maxFlowsPerIp: 0, responses: 0 });
  });

  test("refuses each TCP-only key with its own error at its path", () => {
    const errors = errorsOf(`
[[listeners]]
listen = "127.0.0.1:53"
protocol = "udp"
backend = "dns"
max_connections = 10
connect_timeout = "1s"
accept_proxy = true
trusted = ["127.0.0.1/32"]
upload_rate = "1MB"
idle_timeout = "off"
${BACKEND}`);
    const text = errors.join("\n");
    expect(text).toContain('listeners[0].max_connections: not with protocol = "udp" (use max_flows)');
    expect(text).toContain('listeners[0].connect_timeout: not with protocol = "udp" (a UDP flow does not connect)');
    expect(text).toContain('listeners[0].accept_proxy: not with protocol = "udp"');
    expect(text).toContain("listeners[0].upload_rate: not with protocol");
    expect(text).toContain("listeners[0].idle_timeout: cannot be off on a UDP listener");
  });

  test("refuses the UDP keys on a TCP listener, and TCP-only backend settings for UDP backends", () => {
    const tcp = errorsOf(`[[listeners]]\nlisten = "127.0.0.1:53"\nbackend = "dns"\nmax_flows = 3\nresponses = 1\n${BACKEND}`).join("\n");
    expect(tcp).toContain('listeners[0].max_flows: only with protocol = "udp"');
    expect(tcp).toContain('listeners[0].responses: only with protocol = "udp"');
    const backend = errorsOf(`
[[listeners]]
listen = "127.0.0.1:53"
protocol = "udp"
backend = "dns"
[backends.dns]
targets = ["127.0.0.1:5353"]
send_proxy = "v1"
health = { interval = "1s" }
`).join("\n");
    expect(backend).toContain('backends.dns.send_proxy: PROXY v1 has no UDP; use "v2"');
    expect(backend).toContain("backends.dns.health: a check over UDP needs a reply to expect");
  });

  test("a backend serves TCP or UDP listeners, not both; a TCP and a UDP listener may share an address", async () => {
    const shared = errorsOf(`
[[listeners]]
listen = "127.0.0.1:53"
backend = "dns"
[[listeners]]
name = "dns-udp"
listen = "127.0.0.1:53"
protocol = "udp"
backend = "dns"
${BACKEND}`).join("\n");
    expect(shared).toContain('listeners[1].backend: backend "dns" also serves listeners[0] (tcp)');
    expect(shared).not.toContain("is already used by");
    const ok = parseConfig(
      `[[listeners]]\nlisten = "127.0.0.1:53"\nbackend = "tcp"\n[[listeners]]\nname = "udp"\nlisten = "127.0.0.1:53"\nprotocol = "udp"\nbackend = "dns"\n${BACKEND}\n[backends.tcp]\ntargets = ["127.0.0.1:5353"]`,
      "toml",
    );
    expect(ok.listeners.map((l) => l.protocol ?? "tcp")).toEqual(["tcp", "udp"]);
    // nor do they clash once resolved, or under a wildcard: a UDP socket is not a TCP one
    const wide = parseConfig(
      `[[listeners]]\nlisten = "0.0.0.0:53"\nbackend = "tcp"\n[[listeners]]\nname = "udp"\nlisten = "127.0.0.1:53"\nprotocol = "udp"\nbackend = "dns"\n[[listeners]]\nname = "udp2"\nlisten = "0.0.0.0:53"\nprotocol = "udp"\nbackend = "dns"\n${BACKEND}\n[backends.tcp]\ntargets = ["127.0.0.1:5353"]`,
      "toml",
    );
    expect(await checkAddressClashes(wide)).toEqual([
      "listeners[2].listen: 0.0.0.0:53 overlaps 127.0.0.1:53, which listeners[1] already listens on (0.0.0.0 listens on every IPv4 address of this machine)",
    ]);
  });

  test("a UDP backend's health check runs over UDP, and check prints the UDP listener", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-udp-check-"));
    try {
      const file = join(dir, "c.toml");
      await Bun.write(
        file,
        `[[listeners]]\nname = "dns"\nlisten = "127.0.0.1:5300"\nprotocol = "udp"\nbackend = "dns"\nresponses = 1\nmax_flows = 100\n[backends.dns]\ntargets = ["127.0.0.1:5353"]\nhealth = { steps = [{ send_hex = "4a4a01000001000000000000016104746573740000010001" }, { expect_hex = "4a4a" }] }\n`,
      );
      const config = parseConfig(readFileSync(file, "utf8"), "toml");
      expect(config.backends.get("dns")!.health!.udp).toBe(true);
      const result = await run([process.execPath, "run", "src/cli.ts", "check", "--config", file]);
      expect(result.code).toBe(0);
      expect(result.stdout + result.stderr).toContain("listener dns 127.0.0.1:5300 (udp, flows idle 1m, responses 1, max_flows 100)");
      expect(result.stdout + result.stderr).toContain("over udp");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("UDP flows as observers see them", () => {
  test("one access log line per flow with packets each way; metrics and /status show the listener", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tcprouter-udp-log-"));
    try {
      await using target = await udpTarget("R:");
      await using router = await startRouter(`
[[listeners]]
name = "dns"
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
responses = 1
deny = ["10.0.0.0/8"]
[backends.dns]
targets = ["${target.address}"]
`);
      const log = new AccessLog({ to: join(dir, "access.log"), flushInterval: 60_000 });
      const metrics = new Metrics(router.view).attach();
      router.view.observe(log);
      await using client = await udpClient(router.port);
      client.send("hello");
      expect((await client.next()).toString()).toBe("R:hello");
      await waitFor(() => router.view.udpListeners![0]!.active === 0, 2000, "the flow to end");
      log.close();
      const line = readFileSync(join(dir, "access.log"), "utf8").trim();
      expect(line).toMatch(
        new RegExp(
          `listener=dns client=127\\.0\\.0\\.1:${client.port} sni=- backend=dns target=${target.address.replaceAll(".", "\\.")} bytes_up=5 bytes_down=7 duration_ms=\\d+ reason=responses protocol=udp packets_up=1 packets_down=1$`,
        ),
      );
      const text = metrics.render();
      expect(text).toContain('tcprouter_udp_flows_active{listener="dns"} 0');
      expect(text).toContain('tcprouter_udp_flows_total{listener="dns"} 1');
      expect(text).toContain('tcprouter_udp_flows_closed_total{listener="dns",reason="responses"} 1');
      expect(text).toContain('tcprouter_udp_datagrams_total{listener="dns",direction="up"} 1');
      expect(text).toContain('tcprouter_udp_bytes_total{listener="dns",direction="down"} 7');
      expect(text).toContain('tcprouter_udp_dropped_total{listener="dns",reason="max_flows"} 0');
      const listed = status(router.view, metrics).listeners.find((l) => l.name === "dns")!;
      expect(listed).toMatchObject({ protocol: "udp", accepted: 1, active: 0, bytesUp: 5, bytesDown: 7, udp: { datagramsUp: 1, datagramsDown: 1 } });
      metrics.detach();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("send_proxy = v2 puts a PROXY v2 DGRAM header in front of each datagram", async () => {
    await using target = await udpTarget("", () => [Buffer.from("ok")]);
    await using router = await startRouter(`
[[listeners]]
listen = "127.0.0.1:0"
protocol = "udp"
backend = "dns"
[backends.dns]
targets = ["${target.address}"]
send_proxy = "v2"
`);
    await using client = await udpClient(router.port);
    client.send("one");
    client.send("two");
    await client.next();
    await client.next();
    const header = encodeProxyV2({ host: "127.0.0.1", port: client.port }, { host: "127.0.0.1", port: router.port }, undefined, "dgram");
    expect(header[13]).toBe(0x12); // INET, DGRAM
    expect(target.received.map((r) => r.data.toString("hex"))).toEqual(
      ["one", "two"].map((text) => Buffer.concat([header, Buffer.from(text)]).toString("hex")),
    );
  });
});
