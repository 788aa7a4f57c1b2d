/**
 * tcp_keepalive and tcp_user_timeout: set on a listener's client sockets at accept and on a
 * backend's upstream sockets once connected. Read back from outside with `ss -tio` (the
 * keepalive timer) and, in this process, with getsockopt on the router's sockets.
 */
import { expect, test } from "bun:test";
import type { Session } from "../../src/proxy/session.ts";
import { getIntOption, IPPROTO_TCP, SO_KEEPALIVE, SOL_SOCKET, TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_USER_TIMEOUT } from "../../src/util/fds.ts";
import { dial, echo, hasCommand, HOST, listen, waitFor } from "../helpers/net.ts";
import { startRouter } from "../helpers/router.ts";

const TOML = (listener: string, backend: string, target: string) =>
  `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n${listener}\n[backends.b]\ntargets = ["${target}"]\n${backend}\n`;

/** SO_KEEPALIVE, TCP_KEEPIDLE (s), TCP_KEEPINTVL (s), TCP_KEEPCNT, TCP_USER_TIMEOUT (ms) of a socket of the router. */
function options(socket: unknown) {
  const fd = (socket as { fd: number }).fd;
  return {
    keepalive: getIntOption(fd, SOL_SOCKET, SO_KEEPALIVE),
    idle: getIntOption(fd, IPPROTO_TCP, TCP_KEEPIDLE),
    interval: getIntOption(fd, IPPROTO_TCP, TCP_KEEPINTVL),
    count: getIntOption(fd, IPPROTO_TCP, TCP_KEEPCNT),
    userTimeout: getIntOption(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
  };
}

/** `ss -tio` lines of established sockets matching `filter`, e.g. `sport = :11000`. */
function ss(filter: string): string {
  return Bun.spawnSync(["ss", "-Htio", "state", "established", filter]).stdout.toString();
}

test("sets keepalive and the user timeout on client sockets (listener) and upstream sockets (backend)", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(
    TOML(
      'tcp_keepalive = { idle = "60s", interval = "10s", count = 5 }\ntcp_user_timeout = "30s"',
      'tcp_keepalive = { idle = "45s", interval = "7s", count = 4 }\ntcp_user_timeout = "20s"',
      upstream.address,
    ),
  );
  await using client = await dial(router.port);
  client.write("ping");
  await waitFor(() => client.text() === "ping", 5000, "the echo");
  // The router's sockets of this session (SessionView has none: the test reads the Session behind it).
  const session = [...router.view.sessions][0] as unknown as Session;
  expect(options(session.client)).toEqual({ keepalive: 1, idle: 60, interval: 10, count: 5, userTimeout: 30_000 });
  expect(options(session.upstream)).toEqual({ keepalive: 1, idle: 45, interval: 7, count: 4, userTimeout: 20_000 });

  if (hasCommand("ss")) {
    // The router's client socket has the listener's port as its source; its upstream socket the target's as its destination.
    const clientLine = ss(`sport = :${router.port}`);
    const upstreamLine = ss(`dport = :${upstream.port}`);
    expect(clientLine).toMatch(/timer:\(keepalive,(59|60)sec,0\)/);
    expect(upstreamLine).toMatch(/timer:\(keepalive,(44|45)sec,0\)/);
  }
});

test("without the keys a socket keeps the system's options (no keepalive)", async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(TOML('download_rate = "100MB"', "", upstream.address));
  await using client = await dial(router.port);
  client.write("ping");
  await waitFor(() => client.text() === "ping", 5000, "the echo");
  const session = [...router.view.sessions][0] as unknown as Session;
  expect(options(session.client)).toMatchObject({ keepalive: 0, userTimeout: 0 });
  expect(options(session.upstream)).toMatchObject({ keepalive: 0, userTimeout: 0 });
  if (hasCommand("ss")) expect(ss(`sport = :${router.port}`)).not.toContain("keepalive");
});

test('tcp_keepalive = "off" and tcp_user_timeout = "off" set nothing', async () => {
  await using upstream = listen(echo);
  await using router = await startRouter(TOML('tcp_keepalive = "off"\ntcp_user_timeout = "off"', 'tcp_keepalive = "off"', upstream.address));
  await using client = await dial(router.port);
  client.write("ping");
  await waitFor(() => client.text() === "ping", 5000, "the echo");
  const session = [...router.view.sessions][0] as unknown as Session;
  expect(options(session.client)).toMatchObject({ keepalive: 0, userTimeout: 0 });
});
