/** The resolved `[admin]` table (admin-schema.ts): the admin HTTP listener, its token and its TLS. */
import type { Address } from "../util/address.ts";

export interface AdminConfig {
  /** Where the admin HTTP server listens (port 0: any free port). */
  listen: Address;
  /**
   * Absolute path of the file holding the bearer token of the control API (surrounding
   * whitespace ignored); null = the DEFAULTS.admin.tokenEnv environment variable, and without
   * either the write endpoints answer 403.
   */
  tokenFile: string | null;
  /** Reads need the token too (not /healthz, /readyz). Default false. */
  protectReads: boolean;
  /** Serve HTTPS with this certificate (and verify clients against `clientCa`); absent or null = plain HTTP. */
  tls?: AdminTlsConfig | null;
}

/** `[admin] tls = { cert, key, client_ca, verify_client }`: file paths, absolute once loaded. */
export interface AdminTlsConfig {
  /** PEM certificate chain, leaf first. */
  cert: string;
  /** Its unencrypted PEM key. */
  key: string;
  /** PEM bundle client certificates must chain to; null = no client certificate asked for. */
  clientCa: string | null;
}
