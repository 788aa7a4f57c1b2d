/**
 * The schema of the `[admin]` table: the address of the admin HTTP listener, its token, and its
 * `tls` (HTTPS, mTLS). schema.ts resolves it into `AdminConfig`.
 */
import * as v from "valibot";
import type { AdminTlsConfig } from "./admin-types.ts";
import { address, boolean, filePath, table, verifyClient } from "./values.ts";

/**
 * `[admin] tls = { cert, key, client_ca, verify_client }`: HTTPS, and with `client_ca` only
 * clients with a certificate it signed (mTLS). `verify_client = "optional"` is refused: Bun.serve
 * lets a client whose certificate failed verification through as one that showed none, and the
 * admin cannot tell them apart.
 */
const AdminTls = v.pipe(
  table(
    { cert: filePath, key: filePath, client_ca: v.optional(filePath), verify_client: v.optional(verifyClient) },
    { cert: "the certificate chain file, PEM", key: "the private key file, PEM" },
    'a table such as { cert = "admin.pem", key = "admin.key" }',
  ),
  v.forward(
    v.partialCheck(
      [["verify_client"]],
      (t) => t.verify_client !== "optional",
      '"optional" is not available for the admin (it could not tell a certificate that failed verification from none): use "required" or "off"',
    ),
    ["verify_client"],
  ),
  v.forward(
    v.partialCheck(
      [["verify_client"], ["client_ca"]],
      (t) => t.verify_client !== "required" || t.client_ca !== undefined,
      'missing (verify_client = "required" needs the CA file client certificates are checked against)',
    ),
    ["client_ca"],
  ),
  v.transform((t): AdminTlsConfig => ({ cert: t.cert, key: t.key, clientCa: t.verify_client === "off" ? null : (t.client_ca ?? null) })),
);

export const Admin = table(
  { listen: address(true), token_file: v.optional(filePath), protect_reads: v.optional(boolean), tls: v.optional(AdminTls) },
  { listen: 'the address to serve metrics and status on, e.g. "127.0.0.1:9901"' },
);
