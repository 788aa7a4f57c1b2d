/**
 * QUIC (HTTP/3) routed by SNI through one UDP listener (mode = "sni"): two ngtcp2 gtlsserver
 * targets with their own certificates and files, and gtlsclient asking each name through the
 * router (run in a mount namespace where the name resolves to 127.0.0.1: see quicFetch). Each name reaches its own server and the body arrives intact; a name with no route
 * gets nothing and is logged; datagrams that are no QUIC Initial are dropped and counted
 * without a flow.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fdCount, ROOT, waitFor } from "../../helpers/net.ts";
import { startRouter } from "../../helpers/router.ts";
import { canUnshareMounts, hasQuicTools, quicFetch, quicServer, udpClient } from "../../helpers/udp.ts";
import type { FlowView, UdpListenerView } from "../../../src/proxy/handle.ts";

const CERTS = `${ROOT}test/fixtures/tls/certs`;
const listenerOf = (router: { view: { udpListeners?: readonly UdpListenerView[] } }) => router.view.udpListeners![0]!;

describe.skipIf(!hasQuicTools() || !(await canUnshareMounts()))("QUIC by SNI (gtlsserver, gtlsclient)", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tcprouter-quic-"));
    for (const name of ["web", "db", "out-web", "out-db", "out-none"]) mkdirSync(join(dir, name));
    writeFileSync(join(dir, "web", "file"), crypto.getRandomValues(Buffer.alloc(60_000)));
    writeFileSync(join(dir, "db", "file"), crypto.getRandomValues(Buffer.alloc(30_000)));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("routes each QUIC client by its server name to its own server, bytes intact; an unknown name gets nothing", async () => {
    const fds = fdCount();
    {
      await using web = await quicServer(join(dir, "web"), `${CERTS}/web.key`, `${CERTS}/web.pem`);
      await using db = await quicServer(join(dir, "db"), `${CERTS}/db.key`, `${CERTS}/db.pem`);
      await using router = await startRouter(`
[[listeners]]
name = "h3"
listen = "127.0.0.1:0"
protocol = "udp"
mode = "sni"
idle_timeout = "2s"
[[listeners.routes]]
server_names = ["web.example.com"]
backend = "web"
[[listeners.routes]]
server_names = ["db.example.com"]
alpn = ["h3"]
backend = "db"

[backends.web]
targets = ["${web.address}"]
[backends.db]
targets = ["${db.address}"]
`);
      const closed: FlowView[] = [];
      router.view.observe({ flowClosed: (flow) => void closed.push(flow) });
      expect(await quicFetch(router.port, "web.example.com", "/file", join(dir, "out-web"), dir)).toBe(0);
      expect(readFileSync(join(dir, "out-web", "file")).equals(readFileSync(join(dir, "web", "file")))).toBe(true);
      expect(await quicFetch(router.port, "db.example.com", "/file", join(dir, "out-db"), dir)).toBe(0);
      expect(readFileSync(join(dir, "out-db", "file")).equals(readFileSync(join(dir, "db", "file")))).toBe(true);
      const flows = [...listenerOf(router).flows];
      expect(flows.map((flow) => [flow.sni, flow.backend.name]).sort()).toEqual([
        ["db.example.com", "db"],
        ["web.example.com", "web"],
      ]);

      // gtlsclient exits 0 after its idle timeout: what shows is that nothing came back
      await quicFetch(router.port, "nobody.example.com", "/file", join(dir, "out-none"), dir, "1s");
      expect(existsSync(join(dir, "out-none", "file"))).toBe(false);
      // one line per second at most (the client's retransmitted Initial a second later is a new flow)
      expect(router.matching('no route for QUIC server name "nobody.example.com"').length).toBeGreaterThanOrEqual(1);
      expect(listenerOf(router).dropped.no_route).toBeGreaterThan(0);
      expect(closed.filter((flow) => flow.reason === "no_route").length).toBeGreaterThanOrEqual(1);

      // not a QUIC Initial: dropped and counted, no flow
      await using junk = await udpClient(router.port);
      const accepted = listenerOf(router).accepted;
      junk.send(Buffer.alloc(1200, 7));
      junk.send("short");
      await waitFor(() => listenerOf(router).dropped.quic_error === 2, 2000, "two quic_error drops");
      expect(listenerOf(router).accepted).toBe(accepted);
      await waitFor(() => listenerOf(router).active === 0, 5000, "every flow to end after its idle timeout");
    }
    await waitFor(() => fdCount() <= fds, 3000, "descriptors back");
  }, 30_000);
});
