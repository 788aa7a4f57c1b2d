/**
 * The certificates of a terminating listener, chosen by SNI, and replaced on a live listener
 * by a reload.
 *
 * `Bun.listen` takes one `tls` object and its `reload()` keeps the first TLS context, but the
 * listener it returns is the same native handle `node:tls` servers run on, and Bun 1.4's
 * `node:tls` installs SNI contexts (`addContext`) and swaps the default one
 * (`setSecureContext`) through bindings that take nothing from the server but `this._handle`.
 * We call those two methods of a `node:tls` server (never listening) with our listener as the
 * handle. Connections already open keep the context they were accepted with.
 */
import { readFileSync } from "node:fs";
import tls from "node:tls";
import type { TCPSocketListener } from "bun";
import type { ListenerCertificate, ListenerTlsConfig, TlsPolicy, TlsVersion } from "../config/types.ts";
import type { ProxySsl } from "../protocol/proxy-protocol.ts";
import type { ClientSocket } from "./context.ts";
import type { ClientCertificate } from "./route.ts";

interface Bindings {
  addContext(this: { _handle: unknown }, hostname: string, context: Pem): void;
  setSecureContext(this: { _handle: unknown }, context: Pem): void;
}

/**
 * One certificate's context, as node:tls `createSecureContext` takes it (what `addContext` and
 * `setSecureContext` install): the policy's ciphers and curves go in every context (an SNI
 * context's own cipher list is the one used for its clients), and so does the client CA (an SNI
 * context verifies client certificates against its own store).
 */
interface Pem {
  cert: string;
  key: string;
  ciphers?: string;
  ecdhCurve?: string;
  ca?: string;
  minVersion?: TlsVersion;
  maxVersion?: TlsVersion;
}

/**
 * What Bun.listen's `tls` takes beyond the first certificate. Checked on Bun 1.4.5
 * (test/proxy/tls-policy.test.ts): `minVersion`/`maxVersion` as OpenSSL numbers (0x0303,
 * 0x0304; a string throws), `ciphers` (TLS 1.2 only), `ecdhCurve`, and `requestCert`, `ca`,
 * `rejectUnauthorized` (a missing certificate is refused with alert 116 in TLS 1.3, 40 in
 * 1.2; a certificate that does not verify is NOT refused: the handshake succeeds with
 * `authorized === false`, and the listener closes such a client itself).
 */
export interface ListenTls extends Omit<Pem, "minVersion" | "maxVersion"> {
  minVersion?: number;
  maxVersion?: number;
  requestCert?: boolean;
  rejectUnauthorized?: boolean;
}

const VERSION_NUMBER: Record<TlsVersion, number> = { "TLSv1.2": 0x0303, "TLSv1.3": 0x0304 };

let bindings: Bindings | null = null;

/** The PEM texts of a listener's certificates, read now: a missing file throws here, before anything changes. */
export interface LoadedCertificates {
  /** The first certificate: clients without SNI, or with a name no certificate lists. */
  fallback: Pem;
  /** Server-name pattern → certificate; the first certificate listing a name wins. */
  byName: Map<string, Pem>;
  /** `verify_client`: "off" (default), "optional" or "required". */
  verify: TlsPolicy["verifyClient"];
  /** The policy as installed, to tell a reload that changes it (see `Listener.canTake`). */
  policy: string;
}

/**
 * Reads every certificate and key file (and the client CA) and checks that OpenSSL takes each
 * pair with the policy, so that `install` cannot fail halfway. Throws an Error with a one-line
 * message.
 */
export function loadCertificates(config: ListenerTlsConfig): LoadedCertificates {
  bindings ??= borrowBindings();
  const policy = config.policy;
  const verify = policy?.verifyClient ?? "off";
  const ca = verify !== "off" && policy?.clientCa ? readText(policy.clientCa) : undefined;
  const read = (certificate: ListenerCertificate): Pem => {
    const pem: Pem = { cert: readText(certificate.cert), key: readText(certificate.key) };
    const ciphers = certificate.ciphers ?? policy?.ciphers;
    if (ciphers) pem.ciphers = ciphers;
    if (policy?.curves) pem.ecdhCurve = policy.curves;
    if (policy?.minVersion) pem.minVersion = policy.minVersion;
    if (policy?.maxVersion) pem.maxVersion = policy.maxVersion;
    if (ca !== undefined) pem.ca = ca;
    try {
      tls.createSecureContext(pem); // what the bindings would do later, to fail before any change
    } catch (error) {
      const reason = (error as Error).message.split(":").at(-1)!.toLowerCase().replaceAll("_", " ");
      throw new Error(`${certificate.cert} with ${certificate.key}: not a usable certificate and key (${reason})`);
    }
    return pem;
  };
  const pems = config.certificates.map(read);
  const byName = new Map<string, Pem>();
  config.certificates.forEach((certificate, i) => {
    for (const name of certificate.names) if (!byName.has(name)) byName.set(name, pems[i]!);
  });
  const text = JSON.stringify([policy?.minVersion, policy?.maxVersion, policy?.ciphers, policy?.curves, verify, ca]);
  return { fallback: pems[0]!, byName, verify, policy: text };
}

/** The first context for Bun.listen: the default certificate, the policy, and client verification. */
export function listenTls(loaded: LoadedCertificates): ListenTls {
  const { minVersion, maxVersion, ...pem } = loaded.fallback;
  const options: ListenTls = { ...pem };
  if (minVersion) options.minVersion = VERSION_NUMBER[minVersion];
  if (maxVersion) options.maxVersion = VERSION_NUMBER[maxVersion];
  if (loaded.verify !== "off") {
    options.requestCert = true;
    options.rejectUnauthorized = loaded.verify === "required";
  }
  return options;
}

/**
 * Makes `loaded` the listener's certificates: the default context, then one SNI context per
 * name. Names `installed` before that are no longer listed get the default certificate (there
 * is no binding to remove a name). Returns the names now installed.
 */
export function install(
  listener: TCPSocketListener<unknown>,
  loaded: LoadedCertificates,
  installed: ReadonlySet<string>,
  replaceDefault: boolean,
): Set<string> {
  bindings ??= borrowBindings();
  const handle = { _handle: listener };
  if (replaceDefault) bindings.setSecureContext.call(handle, loaded.fallback);
  for (const [name, pem] of loaded.byName) bindings.addContext.call(handle, name, pem);
  for (const name of installed) if (!loaded.byName.has(name)) bindings.addContext.call(handle, name, loaded.fallback);
  return new Set([...installed, ...loaded.byName.keys()]);
}

function borrowBindings(): Bindings {
  const server = tls.createServer({}) as unknown as Partial<Bindings>;
  if (typeof server.addContext !== "function" || typeof server.setSecureContext !== "function") {
    throw new Error(`this Bun (${Bun.version}) has no node:tls addContext/setSecureContext to install certificates with`);
  }
  return server as Bindings;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`cannot read ${path}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (error as Error).message}`);
  }
}

/** What a PROXY v2 header says of a terminated client's TLS (PP2_TYPE_SSL); a certificate here has verified. */
export function proxySsl(socket: ClientSocket, certificate: ClientCertificate | null | undefined): ProxySsl {
  return {
    version: socket.getTLSVersion() ?? "",
    cipher: socket.getCipher()?.name ?? "",
    cn: certificate?.cn ?? null,
    certificate: certificate != null,
    verified: true,
  };
}
