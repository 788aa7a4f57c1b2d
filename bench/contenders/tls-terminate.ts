/**
 * TLS termination as a contender (the TLS suite's `terminate` and `terminate-mtls` rows): the
 * proxy does the TLS 1.3 handshake itself and forwards plaintext to a plain TCP peer
 * (`tls-peers.ts server --plain`). tcprouter and HAProxy get the same certificate and key
 * (test/fixtures/tls/certs/db.pem, EC P-256, CN db.example.com), the same client CA
 * (ca.pem) and the same pins: TLS 1.3 only, key exchange X25519, suite TLS_AES_128_GCM_SHA256
 * (HAProxy's `ciphersuites`; tcprouter's BoringSSL picks it for Bun's client by itself).
 *
 * Client certificates for the mTLS row are made at run time with openssl (EC P-256,
 * clientAuth, signed by the fixture CA), as test/helpers/tls.ts's `clientCerts()` does.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { HOST } from "../runner/net.ts";
import { run } from "../runner/procs.ts";

const CERTS = resolve(import.meta.dir, "../../test/fixtures/tls/certs");

/** The server certificate, its key and the CA both proxies verify client certificates against. */
export const TERMINATE_FILES = { cert: `${CERTS}/db.pem`, key: `${CERTS}/db.key`, ca: `${CERTS}/ca.pem` } as const;

/** "none": `tls = { cert, key }` / `ssl crt`; "required": plus the client CA, a certificate required. */
export type ClientVerify = "none" | "required";

/** The key exchange group both proxies are pinned to (the one Bun's client sends a key share for). */
export const TERMINATE_GROUP = "X25519";

/**
 * The TLS 1.3 suite: what tcprouter (BoringSSL, which takes the client's order) picks for
 * Bun's client. HAProxy (OpenSSL 3.0, its own order: AES-256-GCM first) is pinned to it;
 * tcprouter cannot be (`ciphersuites` is not available on Bun 1.4.5).
 */
export const TERMINATE_SUITE = "TLS_AES_128_GCM_SHA256";

/** A tcprouter config: one terminating listener on `port`, backend the plain peer. */
export function tcprouterTerminateConfig(port: number, peerPort: number, verify: ClientVerify): string {
  const policy = [`min_version = "TLSv1.3"`, `curves = "${TERMINATE_GROUP}"`];
  if (verify === "required") policy.push(`client_ca = "${TERMINATE_FILES.ca}"`, `verify_client = "required"`);
  return `[[listeners]]
listen = "${HOST}:${port}"
backend = "plain"
tls = { cert = "${TERMINATE_FILES.cert}", key = "${TERMINATE_FILES.key}" }
tls_policy = { ${policy.join(", ")} }
[backends.plain]
targets = ["${HOST}:${peerPort}"]
`;
}

/** HAProxy wants the certificate and its key in one PEM file: written into `dir`, its path returned. */
export function haproxyBundle(dir: string): string {
  const file = join(dir, "db-bundle.pem");
  writeFileSync(file, readFileSync(TERMINATE_FILES.cert, "utf8") + readFileSync(TERMINATE_FILES.key, "utf8"), { mode: 0o600 });
  return file;
}

/** The frontend and backend of a HAProxy config (after `haproxyHead()`): `bind … ssl crt …`, mode tcp, server the plain peer. */
export function haproxyTerminateBody(port: number, peerPort: number, bundle: string, verify: ClientVerify): string {
  const client = verify === "required" ? ` ca-file ${TERMINATE_FILES.ca} verify required` : "";
  return `
frontend terminate
  bind ${HOST}:${port} ssl crt ${bundle} ssl-min-ver TLSv1.3 ciphersuites ${TERMINATE_SUITE} curves ${TERMINATE_GROUP}${client}
  default_backend plain

backend plain
  server s1 ${HOST}:${peerPort}
`;
}

/** A client certificate and its key (PEM files) in a fresh directory under `parent`. */
export interface ClientCert {
  dir: string;
  cert: string;
  key: string;
}

/** `openssl req -x509 -CA ca.pem …`: CN=bench-client, clientAuth, EC P-256, valid 2 days. */
export async function makeClientCert(parent: string): Promise<ClientCert> {
  const dir = mkdtempSync(join(parent, "client-cert-"));
  const cert = join(dir, "client.pem");
  const key = join(dir, "client.key");
  const result = await run(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
      "-CA",
      `${CERTS}/ca.pem`,
      "-CAkey",
      `${CERTS}/ca.key`,
      "-keyout",
      key,
      "-out",
      cert,
      "-subj",
      "/CN=bench-client",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=clientAuth",
    ],
    15_000,
  );
  if (result.code !== 0) throw new Error(`openssl req for the client certificate: exit ${result.code}: ${result.stderr.trim().split("\n").at(-1)}`);
  return { dir, cert, key };
}
