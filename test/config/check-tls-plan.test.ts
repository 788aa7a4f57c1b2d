/** `check` shows each terminating listener's tls_policy and a backend's client certificate (its path, never the key). */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { renderPlan } from "../../src/commands/check.ts";
import { parseConfig } from "../../src/config/load.ts";
import { ROOT } from "../helpers/net.ts";

const CERTS = `${ROOT}test/fixtures/tls/certs`;

test("a strict policy, a certificate's own ciphers and a backend's client certificate are in the plan", () => {
  const config = parseConfig(
    `[[listeners]]
listen = "127.0.0.1:6380"
backend = "redis"
tls = [{ cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key" }, { cert = "${CERTS}/db.pem", key = "${CERTS}/db.key", ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384" }]
tls_policy = { min_version = "TLSv1.3", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256", curves = "X25519:P-256", client_ca = "${CERTS}/ca.pem" }
[backends.redis]
targets = ["127.0.0.1:6379"]
tls = { servername = "localhost", ca = "${CERTS}/ca.pem", cert = "${CERTS}/web.pem", key = "${CERTS}/web.key", min_version = "TLSv1.3", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" }
`,
    "toml",
  );
  const plan = renderPlan(config);
  expect(plan.split("\n")[2]).toBe(
    `listener 127.0.0.1:6380 (tls ${CERTS}/localhost.pem (default; localhost upstream.test), ${CERTS}/db.pem (db.example.com; ciphers ECDHE-ECDSA-AES256-GCM-SHA384), ` +
      `tls_policy (TLSv1.3-TLSv1.3; ciphers ECDHE-ECDSA-AES128-GCM-SHA256; curves X25519:P-256; verify_client required against ${CERTS}/ca.pem)) → ` +
      `backend redis (round-robin, retries 2, no health checks, tls verifying localhost against ${CERTS}/ca.pem, client certificate ${CERTS}/web.pem, tls versions TLSv1.3-TLSv1.3, ciphers ECDHE-ECDSA-AES128-GCM-SHA256)`,
  );
  expect(plan).not.toContain("web.key");
  expect(plan).not.toContain(readFileSync(`${CERTS}/web.key`, "utf8").split("\n")[1]!);
});
