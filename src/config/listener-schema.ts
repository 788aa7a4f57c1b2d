/**
 * The schema of a `[[listeners]]` table: its routes (`[[listeners.routes]]`), its `tls`
 * certificates and `tls_policy`, and the keys of a UDP listener. Which keys go with which mode
 * or protocol is checked across sections (checks.ts); schema.ts resolves the table into
 * `ListenerConfig`s.
 */
import * as v from "valibot";
import { describe } from "./messages.ts";
import type { ListenerCertificate, ListenerTlsConfig, RouteConfig, TlsPolicy } from "./listener-types.ts";
import {
  alpnList,
  boolean,
  cidrList,
  cipherList,
  ciphersuitesRefused,
  count,
  curveList,
  duration,
  expected,
  filePath,
  listenAddress,
  listenerOnly,
  mode,
  name,
  SESSION_CONTROL_KEYS,
  serverNames,
  splitSubject,
  table,
  tlsVersion,
  verifyClient,
} from "./values.ts";

const nonEmpty = (what: string) => v.pipe(v.string(expected(what)), v.minLength(1, expected(what)));

/** `"CN=admin,O=ops"`: attributes `KEY=value`, separated by commas (a comma in a value as `\\,`). */
const clientSubject = v.pipe(
  nonEmpty('a subject such as "CN=admin,O=ops"'),
  v.check(
    (text) => splitSubject(text) !== null,
    (issue) => `expected a subject such as "CN=admin,O=ops", got ${describe(issue.input)}`,
  ),
);

/** A SHA-256 fingerprint, 32 bytes in hex, with or without colons; kept as OpenSSL prints it (`AB:CD:…`). */
const fingerprint = v.pipe(
  nonEmpty('a SHA-256 fingerprint such as "AB:CD:…" (openssl x509 -noout -fingerprint -sha256)'),
  v.transform((text) => text.replaceAll(":", "").toUpperCase()),
  v.regex(/^[0-9A-F]{64}$/, (issue) => `expected a SHA-256 fingerprint (64 hex digits, colons allowed), got ${describe(issue.input)}`),
  v.transform((hex) => hex.match(/../g)!.join(":")),
);

/**
 * `[[listeners.routes]]`: server_names and/or alpn → backend (sni mode), or client_subject,
 * client_cn and/or client_fingerprint → backend (a terminating listener that verifies client
 * certificates). Which keys go with which listener is checked in `checkListener`.
 */
const Route = v.pipe(
  table(
    {
      server_names: v.optional(serverNames("expected at least one name (leave server_names out to match by alpn alone)")),
      alpn: v.optional(alpnList),
      client_subject: v.optional(clientSubject),
      client_cn: v.optional(
        v.pipe(v.array(nonEmpty('a common name such as "admin"'), expected('a list of names such as ["admin"]')), v.minLength(1, "expected at least one name")),
      ),
      client_fingerprint: v.optional(
        v.pipe(v.array(fingerprint, expected('a list of SHA-256 fingerprints such as ["AB:CD:…"]')), v.minLength(1, "expected at least one fingerprint")),
      ),
      backend: name,
    },
    { backend: "the name of the backend for clients this route matches" },
    'a table such as { server_names = ["db.example.com"], backend = "db" }',
  ),
  v.transform((r): RouteConfig => {
    const route: RouteConfig = { serverNames: r.server_names ?? [], alpn: r.alpn ?? [], backend: r.backend };
    if (r.client_subject !== undefined || r.client_cn !== undefined || r.client_fingerprint !== undefined)
      route.client = { subject: r.client_subject ?? null, cn: r.client_cn ?? [], fingerprint: r.client_fingerprint ?? [] };
    return route;
  }),
);

function certificate(what: string) {
  return v.pipe(
    table(
      {
        cert: filePath,
        key: filePath,
        names: v.optional(serverNames("expected at least one name (leave names out to use the certificate's own)")),
        ciphers: v.optional(cipherList),
        ciphersuites: v.optional(ciphersuitesRefused),
        min_version: v.optional(listenerOnly("min_version")),
        max_version: v.optional(listenerOnly("max_version")),
        curves: v.optional(listenerOnly("curves (TLS 1.3 key shares)")),
      },
      { cert: "the certificate chain file, PEM", key: "the private key file, PEM" },
      what,
    ),
    v.transform((c): ListenerCertificate => ({ cert: c.cert, key: c.key, names: c.names ?? [], ...(c.ciphers ? { ciphers: c.ciphers } : {}) })),
  );
}

/** `tls = { cert, key }`, or a list of them chosen by SNI (names filled in by `withFiles`). */
const ListenerTls = v.pipe(
  v.lazy((input) =>
    Array.isArray(input)
      ? v.pipe(v.array(certificate('a table such as { cert = "cert.pem", key = "key.pem" }')), v.minLength(1, "expected at least one certificate"))
      : certificate('a table such as { cert = "cert.pem", key = "key.pem" }, or a list of them'),
  ),
  v.transform((t): ListenerTlsConfig => ({ certificates: Array.isArray(t) ? t : [t] })),
);

/** `tls_policy = { min_version, max_version, ciphers, curves, client_ca, verify_client }` of a terminating listener. */
const TlsPolicySchema = v.pipe(
  table(
    {
      min_version: v.optional(tlsVersion),
      max_version: v.optional(tlsVersion),
      ciphers: v.optional(cipherList),
      ciphersuites: v.optional(ciphersuitesRefused),
      curves: v.optional(curveList),
      client_ca: v.optional(filePath),
      verify_client: v.optional(verifyClient),
    },
    {},
    'a table such as { min_version = "TLSv1.3", client_ca = "clients-ca.pem", verify_client = "required" }',
  ),
  v.check(
    (p) => p.min_version === undefined || p.max_version === undefined || p.min_version <= p.max_version,
    (issue) =>
      `min_version ${(issue.input as { min_version: string }).min_version} is above max_version ${(issue.input as { max_version: string }).max_version}`,
  ),
  v.transform(
    (p): TlsPolicy => ({
      minVersion: p.min_version ?? null,
      maxVersion: p.max_version ?? null,
      ciphers: p.ciphers ?? null,
      curves: p.curves ?? null,
      clientCa: p.client_ca ?? null,
      verifyClient: p.verify_client ?? (p.client_ca !== undefined ? "required" : "off"),
    }),
  ),
);

/** `protocol = "udp"`: a UDP listener (docs/udp.md); which keys go with it is in `checkUdp`. */
const protocol = v.picklist(["tcp", "udp"], (issue) =>
  typeof issue.input === "string" ? `unknown protocol ${describe(issue.input)} (use "tcp" or "udp")` : expected('"tcp" or "udp"')(issue),
);

/** Which keys go with which mode, and `backend` being required in tcp mode, are in `checkListener`. */
export const Listener = table(
  {
    name: v.optional(name),
    listen: listenAddress,
    mode: v.optional(mode),
    backend: v.optional(name),
    routes: v.optional(v.array(Route, expected("an array of tables ([[listeners.routes]])"))),
    hello_timeout: v.optional(duration(true)),
    accept_proxy: v.optional(boolean),
    trusted: v.optional(cidrList(1, 'expected at least one range (the proxies in front, e.g. ["127.0.0.1/32"])')),
    allow: v.optional(cidrList(0)),
    deny: v.optional(cidrList(0)),
    max_connections_per_ip: v.optional(count(0)),
    connection_rate_per_ip: v.optional(count(0)),
    tls: v.optional(ListenerTls),
    tls_policy: v.optional(TlsPolicySchema),
    max_connections: v.optional(count(0)),
    connect_timeout: v.optional(duration()),
    idle_timeout: v.optional(duration()),
    write_timeout: v.optional(duration()),
    half_closed_timeout: v.optional(duration()),
    max_session_duration: v.optional(duration()),
    ...SESSION_CONTROL_KEYS,
    protocol: v.optional(protocol),
    max_flows: v.optional(count(0)),
    max_flows_per_ip: v.optional(count(0)),
    responses: v.optional(count(0)),
  },
  { listen: 'the address to listen on, e.g. "127.0.0.1:11000"' },
);
