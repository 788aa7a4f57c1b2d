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
import type { ListenerCertificate, ListenerTlsConfig } from "../config/types.ts";

interface Bindings {
  addContext(this: { _handle: unknown }, hostname: string, context: Pem): void;
  setSecureContext(this: { _handle: unknown }, context: Pem): void;
}

interface Pem {
  cert: string;
  key: string;
}

let bindings: Bindings | null = null;

/** The PEM texts of a listener's certificates, read now: a missing file throws here, before anything changes. */
export interface LoadedCertificates {
  /** The first certificate: clients without SNI, or with a name no certificate lists. */
  fallback: Pem;
  /** Server-name pattern → certificate; the first certificate listing a name wins. */
  byName: Map<string, Pem>;
}

/**
 * Reads every certificate and key file and checks that OpenSSL takes each pair, so that
 * `install` cannot fail halfway. Throws an Error with a one-line message.
 */
export function loadCertificates(config: ListenerTlsConfig): LoadedCertificates {
  bindings ??= borrowBindings();
  const read = (certificate: ListenerCertificate): Pem => {
    const pem = { cert: readText(certificate.cert), key: readText(certificate.key) };
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
  return { fallback: pems[0]!, byName };
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
