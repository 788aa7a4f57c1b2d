// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are config values holding ${NAME} references
/**
 * The config's JSON Schema (config/json-schema.ts → schema/tcprouter.schema.json): the shipped
 * file is what the valibot schema generates now, every config the loader accepts validates
 * against it with a real validator (ajv), and a misspelled key is flagged as editors show it.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import Ajv from "ajv";
import { configJsonSchema } from "../../src/config/json-schema.ts";
import { parseConfig } from "../../src/config/load.ts";
import { ROOT } from "../helpers/net.ts";

const SHIPPED = `${ROOT}schema/tcprouter.schema.json`;
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(readFileSync(SHIPPED, "utf8")));

test("the shipped schema is the one the valibot schema generates (run npm run schema after changing it)", () => {
  expect(JSON.parse(readFileSync(SHIPPED, "utf8"))).toEqual(JSON.parse(JSON.stringify(configJsonSchema())));
});

/** Every TOML and JSON config in the repository the loader accepts (some fixtures are bad on purpose). */
function acceptedConfigs(): { file: string; data: unknown }[] {
  const dir = `${ROOT}test/fixtures/config`;
  const files = readdirSync(dir)
    .filter((name) => name.endsWith(".toml") || name.endsWith(".json"))
    .map((name) => `${dir}/${name}`);
  const configMap = readFileSync(`${ROOT}deploy/kubernetes/configmap.yaml`, "utf8");
  const embedded = /tcprouter\.toml: \|\n((?: {4}.*\n|\n)+)/.exec(configMap)?.[1]?.replace(/^ {4}/gm, "");
  const found: { file: string; data: unknown }[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const format = file.endsWith(".json") ? "json" : "toml";
    try {
      parseConfig(text, format, file);
    } catch {
      continue;
    }
    found.push({ file, data: format === "json" ? JSON.parse(text) : Bun.TOML.parse(text) });
  }
  if (embedded !== undefined) found.push({ file: "deploy/kubernetes/configmap.yaml", data: Bun.TOML.parse(embedded) });
  return found;
}

test("every config the loader accepts validates against the schema", () => {
  const configs = acceptedConfigs();
  expect(configs.length).toBeGreaterThanOrEqual(3);
  for (const { file, data } of configs) {
    const ok = validate(data);
    expect({ file, errors: ok ? [] : validate.errors }).toEqual({ file, errors: [] });
  }
});

test("a misspelled key is flagged where it is, and a JSON config may name its schema", () => {
  const config = {
    $schema: "./node_modules/tcprouter/schema/tcprouter.schema.json",
    listeners: [{ listen: "127.0.0.1:11000", backend: "redis", max_conections: 10 }],
    backends: { redis: { targets: ["127.0.0.1:6379"] } },
  };
  expect(validate(config)).toBe(false);
  expect(validate.errors).toContainEqual(expect.objectContaining({ instancePath: "/listeners/0", params: { additionalProperty: "max_conections" } }));
  config.listeners[0] = { listen: "127.0.0.1:11000", backend: "redis" } as (typeof config.listeners)[0];
  expect(validate(config)).toBe(true);
  expect(() => parseConfig(JSON.stringify(config), "json")).not.toThrow();
  const { listeners, ...rest } = config;
  expect(validate({ ...rest, listners: listeners })).toBe(false);
  expect(validate.errors).toContainEqual(expect.objectContaining({ instancePath: "", params: { additionalProperty: "listners" } }));
});

test("where a number or a boolean belongs, the schema also takes one environment variable reference, as the loader does", () => {
  const config = {
    listeners: [{ listen: "127.0.0.1:11000", backend: "redis", max_connections: "${MAX:-100}", accept_proxy: "${PROXY:-false}" }],
    backends: { redis: { targets: ["127.0.0.1:6379"] } },
  };
  expect(validate(config)).toBe(true);
  expect(parseConfig(JSON.stringify(config), "json", "env.json", {}).listeners[0]!.maxConnections).toBe(100);
  config.listeners[0]!.max_connections = "1${MAX:-100}";
  expect(validate(config)).toBe(false);
});
