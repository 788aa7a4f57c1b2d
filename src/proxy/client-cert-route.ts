/**
 * Routes by client certificate: a terminating listener that verifies clients
 * (`tls_policy.verify_client`) sends a session to the backend of the first route its verified
 * certificate matches (`client_subject`, `client_cn`, `client_fingerprint`), else to the
 * listener's backend. A client with no certificate (verify_client = "optional") reaches only
 * the listener's backend.
 *
 * Also here: reading the client certificate off a Bun TLS socket once its handshake is done.
 */
import type { Backend } from "../backend/backend.ts";
import type { ClientCertRule } from "../config/types.ts";
import { splitSubject } from "../config/values.ts";
import type { ClientCertificate, Route, RouteInfo } from "./route.ts";
import type { ClientSocket } from "./context.ts";

/** One route as matched: the subject as a set of `KEY=value` (upper-case keys), CN and fingerprint lists. */
interface CompiledRule {
  subject: Set<string> | null;
  cn: readonly string[];
  fingerprint: readonly string[];
  backend: Backend;
}

export class ClientCertRoute implements Route {
  readonly readsClientHello = false;
  readonly refusal = null;
  private readonly rules: CompiledRule[];

  constructor(
    rules: readonly (ClientCertRule & { backend: Backend })[],
    readonly fallback: Backend | null,
  ) {
    this.rules = rules.map((rule) => ({
      subject: rule.subject === null ? null : subjectSet(splitSubject(rule.subject) ?? []),
      cn: rule.cn,
      fingerprint: rule.fingerprint,
      backend: rule.backend,
    }));
  }

  match(info: RouteInfo): Backend | null {
    const certificate = info.clientCertificate;
    if (certificate == null) return this.fallback;
    let subject: Set<string> | null = null;
    for (const rule of this.rules) {
      if (rule.fingerprint.length > 0 && !rule.fingerprint.includes(certificate.fingerprint)) continue;
      if (rule.cn.length > 0 && !rule.cn.includes(certificate.cn)) continue;
      if (rule.subject !== null) {
        subject ??= subjectSet(splitSubject(certificate.subject) ?? []);
        if (!sameSet(rule.subject, subject)) continue;
      }
      return rule.backend;
    }
    return this.fallback;
  }
}

/**
 * The client's certificate, once its handshake is done: null when it sent none. The subject
 * keeps the certificate's order of attributes; a multi-valued attribute repeats its key.
 */
export function readClientCertificate(socket: ClientSocket): ClientCertificate | null {
  const peer = socket.getPeerCertificate() as { subject?: Record<string, string | string[]>; fingerprint256?: string } | undefined;
  if (peer?.subject === undefined || peer.fingerprint256 === undefined) return null;
  const parts: string[] = [];
  for (const [key, value] of Object.entries(peer.subject)) {
    for (const one of Array.isArray(value) ? value : [value]) parts.push(`${key}=${one.replaceAll(",", "\\,")}`);
  }
  const cn = peer.subject.CN;
  return { subject: parts.join(","), cn: (Array.isArray(cn) ? cn.at(-1) : cn) ?? "", fingerprint: peer.fingerprint256 };
}

function subjectSet(parts: [string, string][]): Set<string> {
  return new Set(parts.map(([key, value]) => `${key}=${value}`));
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
