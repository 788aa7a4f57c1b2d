/**
 * deploy/kubernetes, checked offline: the manifests parse, the probes reach the admin listener
 * the ConfigMap's tcprouter.toml sets, the grace period outlasts preStop plus the drain, and the
 * embedded config passes `tcprouter check`.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDuration } from "../../src/util/duration.ts";
import { parseAddress } from "../../src/util/address.ts";
import { ROOT, run } from "../helpers/net.ts";

// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
type Manifest = any;

function manifest(name: string): Manifest {
  return Bun.YAML.parse(readFileSync(join(ROOT, "deploy/kubernetes", name), "utf8"));
}

const configMap = manifest("configmap.yaml");
const deployment = manifest("deployment.yaml");
const service = manifest("service.yaml");
const toml: string = configMap.data["tcprouter.toml"];
const config = Bun.TOML.parse(toml) as { defaults: { drain_timeout: string }; admin: { listen: string }; listeners: { name: string; listen: string }[] };
const pod = deployment.spec.template.spec;
const container = pod.containers[0];

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

test("the manifests are one ConfigMap, one Deployment and one Service, selecting the same pods", () => {
  expect([configMap.kind, deployment.kind, service.kind]).toEqual(["ConfigMap", "Deployment", "Service"]);
  const labels = deployment.spec.template.metadata.labels;
  expect(deployment.spec.selector.matchLabels).toEqual(labels);
  expect(service.spec.selector).toEqual(labels);
  expect(pod.volumes.find((volume: Manifest) => volume.name === "config").configMap.name).toBe(configMap.metadata.name);
});

test("the probes ask /healthz and /readyz on the port of the config's [admin] listen", () => {
  const admin = parseAddress(config.admin.listen);
  if (admin.kind !== "tcp") throw new Error("[admin] listen must be host:port for HTTP probes");
  expect(admin.host).toBe("0.0.0.0"); // the kubelet probes the pod IP
  const port = container.ports.find((entry: Manifest) => entry.name === container.readinessProbe.httpGet.port);
  expect(port.containerPort).toBe(admin.port);
  expect(container.readinessProbe.httpGet.path).toBe("/readyz");
  expect(container.livenessProbe.httpGet.path).toBe("/healthz");
  expect(container.livenessProbe.httpGet.port).toBe(port.name);
});

test("the service and container ports are the config's listener ports", () => {
  const listener = parseAddress(config.listeners[0]!.listen);
  if (listener.kind !== "tcp") throw new Error("expected a tcp listener");
  const port = container.ports.find((entry: Manifest) => entry.containerPort === listener.port);
  expect(port).toBeDefined();
  expect(service.spec.ports.map((entry: Manifest) => entry.targetPort)).toContain(port.name);
});

test("terminationGracePeriodSeconds outlasts the preStop sleep plus drain_timeout", () => {
  const drainMs = parseDuration(config.defaults.drain_timeout);
  const preStopMs = container.lifecycle.preStop.sleep.seconds * 1000;
  expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(preStopMs + drainMs);
});

test("the pod runs as a non-root user on a read-only root filesystem, the config mounted where the image's CMD reads it", () => {
  expect(pod.securityContext.runAsNonRoot).toBe(true);
  expect(pod.securityContext.runAsUser).toBe(65532);
  expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
  expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
  const mount = container.volumeMounts.find((entry: Manifest) => entry.name === "config");
  const configArg = container.args[container.args.indexOf("--config") + 1];
  expect(configArg).toBe(`${mount.mountPath}/tcprouter.toml`);
  const containerfile = readFileSync(join(ROOT, "deploy/container/Containerfile"), "utf8");
  expect(containerfile).toContain(`CMD ["--config", "${configArg}", "--log-format", "json"]`);
});

test("the ConfigMap's tcprouter.toml passes tcprouter check", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tcprouter-k8s-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "tcprouter.toml");
  writeFileSync(file, toml);
  const result = await run([process.execPath, "run", "src/cli.ts", "check", "--config", file], 30_000);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  expect(result.stdout).toContain("listener redis 0.0.0.0:11000");
}, 30_000);
