/**
 * The TCP options of a session's sockets: `tcp_keepalive` and `tcp_user_timeout` of a
 * listener's or a backend's session controls, set on a client socket at accept (listener.ts)
 * and on an upstream socket once it connects (connector.ts).
 */
import type { SessionControls } from "../config/types.ts";
import { IPPROTO_TCP, setIntOption, TCP_KEEPCNT, TCP_KEEPINTVL, TCP_USER_TIMEOUT } from "../util/fds.ts";
import type { Logger } from "../util/log.ts";

/** True when `controls` sets a TCP option (a listener or backend with only bandwidth limits sets none). */
export function hasTcpOptions(controls: SessionControls | null | undefined): boolean {
  return controls != null && (controls.tcpKeepalive !== null || controls.tcpUserTimeout > 0);
}

let tcpOptionsFailed = false;

/**
 * Sets `tcp_keepalive` and `tcp_user_timeout` on a plain socket (a client at accept, an
 * upstream once connected). Bun's setKeepAlive sets SO_KEEPALIVE and TCP_KEEPIDLE (and an
 * interval of 1 s and 10 probes of its own); the interval, the count and the user timeout are
 * set through setsockopt on the descriptor. A TLS socket has no descriptor (-1): the config
 * refuses these keys with tls. A failure is one warn line per process, then silent.
 */
export function setTcpOptions(socket: { setKeepAlive(enable?: boolean, initialDelay?: number): boolean }, controls: SessionControls, log: Logger): void {
  const fd = (socket as unknown as { fd?: number }).fd ?? -1;
  if (fd < 0) return;
  try {
    const keepalive = controls.tcpKeepalive;
    if (keepalive !== null) {
      socket.setKeepAlive(true, keepalive.idle);
      setIntOption(fd, IPPROTO_TCP, TCP_KEEPINTVL, Math.ceil(keepalive.interval / 1000), "TCP_KEEPINTVL");
      setIntOption(fd, IPPROTO_TCP, TCP_KEEPCNT, keepalive.count, "TCP_KEEPCNT");
    }
    if (controls.tcpUserTimeout > 0) setIntOption(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, controls.tcpUserTimeout, "TCP_USER_TIMEOUT");
  } catch (error) {
    if (tcpOptionsFailed) return;
    tcpOptionsFailed = true;
    log.warn(`cannot set TCP options (tcp_keepalive, tcp_user_timeout): ${(error as Error).message}; sockets keep the system's`);
  }
}
