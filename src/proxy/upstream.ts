/**
 * The upstream side of a session: one object per connect attempt (the upstream socket's data,
 * so a late socket of an abandoned attempt is told apart) and the upstream socket handlers,
 * defined once; each forwards to the attempt's session.
 */
import type { Socket } from "bun";
import type { TargetState, UpstreamTls } from "../backend/backend.ts";
import type { Session } from "./session.ts";

/** One connect attempt: the upstream socket's data, so that a late socket of an abandoned attempt is told apart. */
export class Attempt {
  constructor(
    readonly session: Session,
    readonly target: TargetState,
  ) {}
}

/** Without a configured server name, a target found by DNS is verified (and asked) by its hostname, not its IP. */
export function upstreamTls(tls: UpstreamTls, target: TargetState): UpstreamTls {
  if (tls.serverName !== undefined || target.name === target.key) return tls;
  const host = target.name.slice(0, target.name.lastIndexOf(":"));
  return { ...tls, serverName: host };
}

/** An error as one word where there is a code (ECONNREFUSED), else its message. */
export function errorText(error: Error): string {
  const code = (error as { code?: string }).code;
  return code ?? error.message;
}

/** The plain connection of a PROXY + TLS attempt: it only writes the header and starts TLS; the TLS socket carries the session. */
export const proxyFirstHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Attempt>) {
    socket.data.session.clearProxyThenTls(socket);
  },
  data() {},
  close() {},
  connectError(socket: Socket<Attempt>, error: Error) {
    const attempt = socket.data;
    if (attempt !== undefined && attempt === attempt.session.attempt) attempt.session.connectFailed("connect_failed", errorText(error));
  },
  error() {},
};

/** Handlers of upstream sockets (Bun.connect). `socket.data` is the connect attempt. */
export const upstreamHandlers = {
  binaryType: "buffer" as const,
  open(socket: Socket<Attempt>) {
    socket.data.session.upstreamOpened(socket);
  },
  data(socket: Socket<Attempt>, chunk: Buffer) {
    const session = socket.data.session;
    if (session.upstream === socket) session.down.push(chunk);
  },
  drain(socket: Socket<Attempt>) {
    const session = socket.data.session;
    if (session.upstream === socket) session.up.flush();
  },
  end(socket: Socket<Attempt>) {
    const session = socket.data.session;
    if (session.upstream === socket) session.ended("upstream");
  },
  close(socket: Socket<Attempt>, error?: Error) {
    const attempt = socket.data;
    const session = attempt.session;
    if (session.upstream === socket) session.socketClosed("upstream", error);
    // Closed before `open`: a TLS handshake that failed. Fail the attempt now, not at the connect timeout.
    else if (session.upstream === null && attempt === session.attempt)
      session.connectFailed("connect_failed", error ? `TLS: ${errorText(error)}` : "TLS handshake failed");
  },
  connectError(socket: Socket<Attempt>, error: Error) {
    const attempt = socket.data;
    if (attempt !== undefined && attempt === attempt.session.attempt) attempt.session.connectFailed("connect_failed", errorText(error));
  },
  error(socket: Socket<Attempt>, error: Error) {
    socket.data?.session.router.log.debug(`upstream socket error: ${errorText(error)}`);
  },
};
