/**
 * Admin hardening (issue 19): HTTPS and client certificates on the admin, the start-up warning
 * for an admin reachable beyond this machine, token files others can read, and JSON for every
 * admin error.
 *
 * Regression: `//api/backends`, `/%61pi/backends` and other odd paths answered a plain-text
 * 404 although every admin error is documented as `{"error": …}`. The admin routes on the path
 * as sent (WHATWG URL parsing neither merges slashes nor decodes `%61`), so those paths missed
 * the `/api/` prefix and fell to the status pages' text 404 and 405. Those answers are now the
 * control API's `failure()` JSON, so whichever branch a path reaches, its error is JSON.
 *
 * Regression: a token file readable by group or others was used as is; now it is refused at
 * load, as ssh refuses such a key (mode & 0o077 must be 0).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readToken } from "../../src/config/files.ts";
import { adminExposure, startAdmin } from "../../src/observe/admin.ts";
import { parseAddress } from "../../src/util/address.ts";
import { echo, freePort, HOST, listen, run, spawnCli } from "../helpers/net.ts";
import { startForward } from "../helpers/router.ts";
import { CA, CERTS, clientCerts } from "../helpers/tls.ts";

const TOKEN = "hardening-token";
const dir = mkdtempSync(join(tmpdir(), "tcprouter-admin-hardening-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tokenFile = join(dir, "admin.token");
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });

/** A request as written on the wire (fetch would normalise the path): status line, content type, body. */
function raw(port: number, method: string, target: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, HOST, () => socket.write(`${method} ${target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n`));
    let text = "";
    socket.on("data", (chunk) => (text += chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", body = ""] = text.split("\r\n\r\n");
      resolve({
        status: Number(head.split(" ")[1]),
        type: /content-type: ([^\r\n]+)/i.exec(head)?.[1] ?? "",
        body,
      });
    });
  });
}

describe("every admin error is JSON", () => {
  test.each([
    ["GET", "//api/backends", 404],
    ["GET", "/%61pi/backends", 404],
    ["GET", "/api%2Fbackends", 404],
    ["GET", "/%zz", 404],
    ["GET", "/nope", 404],
    ["GET", "/api", 404],
    ["GET", "/api/nope", 404],
    ["POST", "//api/backends/default/targets/x/state", 405],
    ["POST", "/status", 405],
    ["DELETE", "/metrics", 405],
  ] as const)("%s %s answers %i with {error}", async (method, target, status) => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view });
    try {
      const answer = await raw(admin.port, method, target);
      expect([answer.status, answer.type]).toEqual([status, "application/json;charset=utf-8"]);
      const body = JSON.parse(answer.body) as { error: string };
      expect(Object.keys(body)).toEqual(["error"]);
      expect(body.error).not.toContain("\n");
    } finally {
      await admin.stop();
    }
  });

  test("with protect_reads, an odd path without the token is 401 JSON (no path slips past the token)", async () => {
    await using upstream = listen(echo);
    await using fwd = await startForward({ to: upstream.address });
    const admin = startAdmin({ listen: `${HOST}:0`, router: fwd.view, auth: { token: TOKEN, protectReads: true } });
    try {
      for (const target of ["//api/backends", "/%61pi/backends", "/%73tatus", "//status"]) {
        const answer = await raw(admin.port, "GET", target);
        expect([target, answer.status, JSON.parse(answer.body)]).toEqual([target, 401, { error: "missing bearer token (Authorization: Bearer …)" }]);
      }
    } finally {
      await admin.stop();
    }
  });
});

describe("token files", () => {
  test("a token file readable by group or others is refused, as ssh refuses such a key", () => {
    const file = join(dir, "loose.token");
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      writeFileSync(file, `${TOKEN}\n`);
      chmodSync(file, mode);
      expect(() => readToken(file)).toThrow(`${file} is readable by others (mode 0${mode.toString(8)}): chmod 600 it`);
    }
    chmodSync(file, 0o600);
    expect(readToken(file)).toBe(TOKEN);
    chmodSync(file, 0o400);
    expect(readToken(file)).toBe(TOKEN);
  });

  test("check and serve stop with one line naming the file and its mode", async () => {
    const loose = join(dir, "world.token");
    writeFileSync(loose, `${TOKEN}\n`);
    chmodSync(loose, 0o644);
    const config = join(dir, "loose.toml");
    writeFileSync(
      config,
      `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\ntargets = ["${HOST}:1"]\n[admin]\nlisten = "${HOST}:0"\ntoken_file = "world.token"\n`,
    );
    const checked = await run([process.execPath, "run", "src/cli.ts", "check", "--config", config], 15_000);
    expect(checked).toEqual({ code: 1, stdout: "", stderr: `${config}: admin.token_file: ${loose} is readable by others (mode 0644): chmod 600 it\n` });
    const served = await run(
      [process.execPath, "run", "src/cli.ts", "--listen", `${HOST}:0`, "--to", `${HOST}:1`, "--admin", `${HOST}:0`, "--admin-token-file", loose],
      15_000,
    );
    expect(served.code).toBe(1);
    expect(served.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(served.stderr).toContain(`ERROR --admin-token-file: ${loose} is readable by others (mode 0644): chmod 600 it`);
  }, 30_000);
});

describe("the start-up warning for an admin reachable beyond this machine", () => {
  const open = { token: TOKEN, protectReads: false };
  const closed = { token: TOKEN, protectReads: true };
  const tls = { cert: "a.pem", key: "a.key", clientCa: null };
  test.each([
    ["127.0.0.1:9901", open, null, null],
    ["127.8.9.10:9901", open, null, null],
    ["[::1]:9901", open, null, null],
    ["localhost:9901", open, null, null],
    ["unix:/run/a.sock", open, null, null],
    [
      "0.0.0.0:9901",
      open,
      null,
      "admin on 0.0.0.0:9901 is reachable beyond this machine and its reads are open (/status and /metrics show every listener, backend and target: set [admin] protect_reads = true), and it speaks plain HTTP (the token travels in clear: set [admin] tls)",
    ],
    [
      "10.0.0.1:9901",
      closed,
      null,
      "admin on 10.0.0.1:9901 is reachable beyond this machine and it speaks plain HTTP (the token travels in clear: set [admin] tls)",
    ],
    [
      "[::]:9901",
      open,
      tls,
      "admin on [::]:9901 is reachable beyond this machine and its reads are open (/status and /metrics show every listener, backend and target: set [admin] protect_reads = true)",
    ],
    ["0.0.0.0:9901", closed, tls, null],
  ] as const)("%s", (listen, auth, withTls, warning) => {
    expect(adminExposure(parseAddress(listen, true), auth, withTls)).toBe(warning);
  });

  test("serve logs it once at start (and not for a loopback admin)", async () => {
    await using upstream = listen(echo);
    await using wide = spawnCli(["--listen", `${HOST}:0`, "--to", upstream.address, "--admin", "0.0.0.0:0"]);
    await wide.stderrMatch(/admin on http:/, 15_000);
    const warnings = wide.stderrText.split("\n").filter((line) => / WARN /.test(line));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("admin on 0.0.0.0:0 is reachable beyond this machine and its reads are open");
    await using local = spawnCli(["--listen", `${HOST}:0`, "--to", upstream.address, "--admin", `${HOST}:0`]);
    await local.stderrMatch(/admin on http:/, 15_000);
    expect(local.stderrText).not.toContain("WARN");
  }, 30_000);
});

describe("admin over TLS and mTLS (Bun.serve tls on Bun 1.4.5)", () => {
  /** A config file whose admin serves HTTPS with the fixture localhost certificate; `clientCa` adds mTLS. */
  function tlsConfig(name: string, upstream: string, adminPort: number, extra = ""): string {
    const path = join(dir, name);
    writeFileSync(
      path,
      `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\ntargets = ["${upstream}"]\n` +
        `[admin]\nlisten = "${HOST}:${adminPort}"\ntoken_file = "admin.token"\n` +
        `tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key"${extra} }\n`,
    );
    return path;
  }

  test("https: serves with the certificate; plain HTTP gets nothing; ctl --admin https:// --ca works", async () => {
    await using upstream = listen(echo);
    const port = freePort();
    await using child = spawnCli(["--config", tlsConfig("https.toml", upstream.address, port)]);
    await child.stderrMatch(new RegExp(`admin on https://${HOST}:${port}/`), 15_000);
    const ok = await fetch(`https://${HOST}:${port}/healthz`, { tls: { ca: CA } });
    expect([ok.status, await ok.text()]).toEqual([200, "ok\n"]);
    expect(
      await fetch(`http://${HOST}:${port}/healthz`).then(
        (r) => r.status,
        () => "refused",
      ),
    ).not.toBe(200);
    const ctl = await run(
      [
        process.execPath,
        "run",
        "src/cli.ts",
        "ctl",
        "weight",
        "b",
        upstream.address,
        "3",
        "--admin",
        `https://${HOST}:${port}`,
        "--ca",
        `${CERTS}/ca.pem`,
        "--token-file",
        tokenFile,
      ],
      15_000,
    );
    expect([ctl.code, ctl.stdout, ctl.stderr]).toEqual([0, `b/${upstream.address}: weight 1 → 3\n`, ""]);
    const untrusted = await run([process.execPath, "run", "src/cli.ts", "ctl", "targets", "--admin", `https://${HOST}:${port}`], 15_000);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(untrusted.stderr).toContain(`cannot reach the admin at https://${HOST}:${port}:`);
  }, 40_000);

  test("mTLS: only a client certificate the client CA signed gets an answer; ctl takes --cert and --key", async () => {
    await using certs = await clientCerts();
    await using upstream = listen(echo);
    const port = freePort();
    await using child = spawnCli(["--config", tlsConfig("mtls.toml", upstream.address, port, `, client_ca = "${CERTS}/ca.pem"`)]);
    await child.stderrMatch(new RegExp(`admin on https://${HOST}:${port}/`), 15_000);
    const url = `https://${HOST}:${port}/healthz`;
    const read = (file: string) => Bun.file(file).text();
    const status = (tls: Record<string, string>) =>
      fetch(url, { tls }).then(
        (r) => r.status,
        (error: Error & { code?: string }) => error.code ?? error.message,
      );
    expect(await status({ ca: CA })).not.toBe(200);
    expect(await status({ ca: CA, cert: await read(certs.cert("rogue")), key: await read(certs.key("rogue")) })).not.toBe(200);
    expect(await status({ ca: CA, cert: await read(certs.cert("admin")), key: await read(certs.key("admin")) })).toBe(200);
    const ctl = (extra: string[]) =>
      run(
        [process.execPath, "run", "src/cli.ts", "ctl", "targets", "--admin", `https://${HOST}:${port}`, "--ca", `${CERTS}/ca.pem`, "--json", ...extra],
        15_000,
      );
    const withCert = await ctl(["--cert", certs.cert("admin"), "--key", certs.key("admin")]);
    expect(withCert.code).toBe(0);
    expect(JSON.parse(withCert.stdout).backends[0].name).toBe("b");
    const without = await ctl([]);
    expect(without.code).toBe(1);
    expect(without.stderr.trimEnd().split("\n")).toHaveLength(1);
  }, 40_000);

  test("curl with a client certificate gets the JSON status; without one the handshake fails", async () => {
    await using certs = await clientCerts();
    await using upstream = listen(echo);
    const port = freePort();
    await using child = spawnCli(["--config", tlsConfig("curl.toml", upstream.address, port, `, client_ca = "${CERTS}/ca.pem", verify_client = "required"`)]);
    await child.stderrMatch(new RegExp(`admin on https://${HOST}:${port}/`), 15_000);
    const curl = (extra: string[]) =>
      run(["curl", "-sS", "--max-time", "5", "--cacert", `${CERTS}/ca.pem`, ...extra, `https://${HOST}:${port}/status`], 10_000);
    const ok = await curl(["--cert", certs.cert("admin"), "--key", certs.key("admin")]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).listeners).toHaveLength(1);
    expect((await curl([])).code).not.toBe(0);
  }, 40_000);

  test("config errors: verify_client optional, required without client_ca, a key that is not the certificate's", async () => {
    const base = `[[listeners]]\nlisten = "${HOST}:0"\nbackend = "b"\n[backends.b]\ntargets = ["${HOST}:1"]\n[admin]\nlisten = "${HOST}:0"\n`;
    const cases: [string, string][] = [
      [
        `tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key", client_ca = "${CERTS}/ca.pem", verify_client = "optional" }`,
        'admin.tls.verify_client: "optional" is not available for the admin (it could not tell a certificate that failed verification from none): use "required" or "off"',
      ],
      [
        `tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/localhost.key", verify_client = "required" }`,
        'admin.tls.client_ca: missing (verify_client = "required" needs the CA file client certificates are checked against)',
      ],
      [
        `tls = { cert = "${CERTS}/localhost.pem", key = "${CERTS}/web.key" }`,
        `admin.tls.key: ${CERTS}/web.key is not the key of the certificate in ${CERTS}/localhost.pem`,
      ],
    ];
    for (const [line, error] of cases) {
      const path = join(dir, "bad-admin-tls.toml");
      writeFileSync(path, `${base}${line}\n`);
      expect(await run([process.execPath, "run", "src/cli.ts", "check", "--config", path], 15_000)).toEqual({
        code: 1,
        stdout: "",
        stderr: `${path}: ${error}\n`,
      });
    }
  }, 30_000);

  test("check prints the admin's https and client verification", async () => {
    const path = tlsConfig("plan.toml", `${HOST}:1`, 9901, `, client_ca = "${CERTS}/ca.pem"`);
    const done = await run([process.execPath, "run", "src/cli.ts", "check", "--config", path], 15_000);
    expect(done.code).toBe(0);
    expect(done.stdout.trimEnd().split("\n").at(-1)).toBe(
      `admin ${HOST}:9901: changes with the token in ${tokenFile}; reads open; https with ${CERTS}/localhost.pem, client certificates required against ${CERTS}/ca.pem`,
    );
  }, 20_000);

  test("--workers with admin TLS is refused in one line (the supervisor's merged admin is plain HTTP)", async () => {
    const path = tlsConfig("workers.toml", `${HOST}:1`, freePort());
    const done = await run([process.execPath, "run", "src/cli.ts", "--config", path, "--workers", "2"], 15_000);
    expect(done.code).toBe(1);
    expect(done.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(done.stderr).toContain("--workers: [admin] tls works with one process only");
  }, 20_000);
});
