/**
 * The preface: what a listener reads from a client before it dials. First a PROXY protocol
 * header (`accept_proxy`), which is removed from the stream and gives the session its real
 * client address; then, in SNI mode, the TLS ClientHello, which picks the route and is
 * forwarded unchanged with everything after it.
 *
 * Bytes after the PROXY header go into the session's client → upstream queue as they arrive
 * (nothing is dialled yet, so they wait there in order). A session has a preface only while
 * it reads one; the data handler checks for it before pushing.
 */
import { ProxyHeaderReader } from "../protocol/proxy-protocol.ts";
import { ALERT_UNRECOGNIZED_NAME, ClientHelloReader, tlsAlert } from "../protocol/sni.ts";
import type { Session } from "./session.ts";

export class Preface {
  private proxy: ProxyHeaderReader | null;
  private hello: ClientHelloReader | null;
  /** Bytes fed to the PROXY reader so far (to find where the header ends in a chunk). */
  private proxyBytes = 0;

  constructor(
    private readonly session: Session,
    acceptProxy: boolean,
    sni: boolean,
  ) {
    this.proxy = acceptProxy ? new ProxyHeaderReader() : null;
    this.hello = sni ? new ClientHelloReader() : null;
  }

  /** Bytes from the client while the preface is being read. */
  feed(chunk: Uint8Array): void {
    const session = this.session;
    if (this.proxy !== null) {
      const result = this.proxy.push(chunk);
      if (result.state === "need-more") {
        this.proxyBytes += chunk.length;
        return;
      }
      if (result.state === "error") return session.prefaceFailed("proxy_error", `PROXY header: ${result.reason}`);
      chunk = chunk.subarray(result.headerLength - this.proxyBytes);
      this.proxy = null;
      if (result.source !== null) session.setClientAddress(result.source.host, result.source.port, result.destination);
      if (!session.admit()) return;
      if (this.hello === null) return this.done(chunk);
    }
    if (chunk.length === 0) return;
    session.up.push(chunk);
    const result = this.hello!.push(chunk);
    if (result.state === "need-more") return;
    if (result.state === "error") return session.prefaceFailed("tls_error", `ClientHello: ${result.reason}`);
    session.sni = result.serverName ?? "";
    const backend = session.listener.route(result.serverName, result.alpn);
    if (backend === null) {
      session.client.write(tlsAlert(ALERT_UNRECOGNIZED_NAME));
      return session.prefaceFailed("no_route", `no route for server name ${result.serverName === null ? "(none)" : JSON.stringify(result.serverName)}`);
    }
    session.backend = backend;
    this.hello = null;
    this.done(null);
  }

  private done(rest: Uint8Array | null): void {
    const session = this.session;
    session.preface = null;
    if (rest !== null && rest.length > 0) session.up.push(rest);
    session.prefaceDone();
  }
}
