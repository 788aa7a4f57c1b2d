/**
 * Preface step: the TLS ClientHello of an SNI listener. Its server name and ALPN go to the
 * route; its bytes are kept, unchanged, to be forwarded to the target first (nothing is
 * terminated).
 */
import { ClientHelloReader } from "../../protocol/sni.ts";
import type { PrefaceContext, PrefaceStep, StepResult } from "./preface.ts";

const NOTHING_LEFT = new Uint8Array(0);

export class ClientHelloStep implements PrefaceStep {
  readonly awaiting = "ClientHello";
  private readonly reader = new ClientHelloReader();

  feed(chunk: Uint8Array, context: PrefaceContext): StepResult {
    context.keep(chunk);
    const result = this.reader.push(chunk);
    if (result.state === "need-more") return "more";
    if (result.state === "error") {
      context.fail("tls_error", `ClientHello: ${result.reason}`);
      return "failed";
    }
    context.info.serverName = result.serverName;
    context.info.alpn = result.alpn;
    return NOTHING_LEFT;
  }
}
