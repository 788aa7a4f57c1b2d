/**
 * The TLS options of a backend's connections to its targets (TLS out), read once per backend:
 * the connector dials with them (adding each target's server name), and the health checks of a
 * TLS backend use them too.
 */
import { readFileSync } from "node:fs";
import type { BackendTlsConfig, TlsVersion } from "../config/types.ts";

/** TLS options for Bun.connect, built once per backend. */
export interface UpstreamTls {
  serverName?: string;
  ca?: string;
  rejectUnauthorized: boolean;
  /** A client certificate (PEM chain) and its key, for targets that ask (mTLS). */
  cert?: string;
  key?: string;
  /** OpenSSL version numbers (0x0303 TLS 1.2, 0x0304 TLS 1.3): Bun.connect takes no names. */
  minVersion?: number;
  maxVersion?: number;
  ciphers?: string;
}

const TLS_VERSION_NUMBER: Record<TlsVersion, number> = { "TLSv1.2": 0x0303, "TLSv1.3": 0x0304 };

/** Reads the CA and the client certificate and key named in `tls`; null (plain TCP) for null. */
export function loadUpstreamTls(tls: BackendTlsConfig | null): UpstreamTls | null {
  if (tls === null) return null;
  return {
    ...(tls.serverName ? { serverName: tls.serverName } : {}),
    ...(tls.ca ? { ca: readFileSync(tls.ca, "utf8") } : {}),
    rejectUnauthorized: tls.verify,
    ...(tls.cert && tls.key ? { cert: readFileSync(tls.cert, "utf8"), key: readFileSync(tls.key, "utf8") } : {}),
    ...(tls.minVersion ? { minVersion: TLS_VERSION_NUMBER[tls.minVersion] } : {}),
    ...(tls.maxVersion ? { maxVersion: TLS_VERSION_NUMBER[tls.maxVersion] } : {}),
    ...(tls.ciphers ? { ciphers: tls.ciphers } : {}),
  };
}
