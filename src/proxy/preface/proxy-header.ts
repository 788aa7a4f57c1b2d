/**
 * Preface step: a PROXY protocol header (v1 or v2) from a trusted proxy in front of the
 * listener (`accept_proxy`). The header is removed from the stream; its source address becomes
 * the session's client address, and the source checks run then, on the real address.
 */
import { ProxyHeaderReader } from "../../protocol/proxy-protocol.ts";
import type { PrefaceContext, PrefaceStep, StepResult } from "./preface.ts";

export class ProxyHeaderStep implements PrefaceStep {
  readonly awaiting = "PROXY header";
  private readonly reader = new ProxyHeaderReader();
  /** Bytes fed to the reader so far (to find where the header ends in a chunk). */
  private fed = 0;

  feed(chunk: Uint8Array, context: PrefaceContext): StepResult {
    const result = this.reader.push(chunk);
    if (result.state === "need-more") {
      this.fed += chunk.length;
      return "more";
    }
    if (result.state === "error") {
      context.fail("proxy_error", `PROXY header: ${result.reason}`);
      return "failed";
    }
    if (result.source !== null) context.setClientAddress(result.source.host, result.source.port, result.destination);
    if (!context.admit()) return "failed";
    return chunk.subarray(result.headerLength - this.fed);
  }
}
