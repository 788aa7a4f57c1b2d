/**
 * Admission: the source checks a listener runs once a client's address is known (at accept,
 * or after its PROXY header): `deny`, `allow`, sessions and new sessions per second per client
 * address. It owns the per-address counts, which outlive a reload that changes the rules.
 *
 * Without any rule the client's address is not even read (a getpeername(2) spared).
 */
import type { CidrSet } from "../util/cidr.ts";

export interface AdmissionRules {
  /** Client addresses let in (null = all) and turned away (checked first). */
  allow: CidrSet | null;
  deny: CidrSet | null;
  /** Sessions open at once per client address; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** New sessions per second per client address; 0 = no limit. */
  connectionRatePerIp: number;
}

export const NO_RULES: AdmissionRules = { allow: null, deny: null, maxConnectionsPerIp: 0, connectionRatePerIp: 0 };

export class Admission {
  /** Sessions open per client address (only with max_connections_per_ip). */
  private readonly perIp = new Map<string, number>();
  /** New sessions per client address in the current second (only with connection_rate_per_ip). */
  private readonly rate = new Map<string, number>();
  private rateSecond = 0;

  /** Replaced as a whole by a reload; the counts stay. */
  constructor(public rules: AdmissionRules = NO_RULES) {}

  /** True when no rule needs the client's address. */
  get open(): boolean {
    const { allow, deny, maxConnectionsPerIp, connectionRatePerIp } = this.rules;
    return allow === null && deny === null && maxConnectionsPerIp === 0 && connectionRatePerIp === 0;
  }

  /**
   * Checks a client address. Returns null when it is let in (and counted in its address's
   * sessions when there is a per-address limit: `counted` then says to `release` it), or why
   * it is turned away.
   */
  check(ip: string): { denied: string; counted: false } | { denied: null; counted: boolean } {
    const { allow, deny, maxConnectionsPerIp, connectionRatePerIp } = this.rules;
    if (deny?.has(ip) || (allow !== null && !allow.has(ip))) return { denied: "address not allowed", counted: false };
    if (connectionRatePerIp > 0) {
      const second = Math.floor(performance.now() / 1000);
      if (second !== this.rateSecond) {
        this.rate.clear();
        this.rateSecond = second;
      }
      const count = (this.rate.get(ip) ?? 0) + 1;
      this.rate.set(ip, count);
      if (count > connectionRatePerIp) return { denied: `over connection_rate_per_ip ${connectionRatePerIp}/s`, counted: false };
    }
    if (maxConnectionsPerIp > 0) {
      const open = this.perIp.get(ip) ?? 0;
      if (open >= maxConnectionsPerIp) return { denied: `over max_connections_per_ip ${maxConnectionsPerIp}`, counted: false };
      this.perIp.set(ip, open + 1);
      return { denied: null, counted: true };
    }
    return { denied: null, counted: false };
  }

  /** A counted session of `ip` ended. */
  release(ip: string): void {
    const left = (this.perIp.get(ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(ip, left);
    else this.perIp.delete(ip);
  }
}
