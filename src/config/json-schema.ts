/**
 * The JSON Schema of the config file, generated from the valibot schema (schema.ts) with the
 * valibot team's @valibot/to-json-schema, so editors (Even Better TOML / taplo, VS Code for
 * JSON) complete keys and flag wrong ones. Our tables are valibot pipes the converter cannot
 * see through (an `isRecord` check before a loose object, and a check that refuses unknown
 * keys), so `table()` registers its keys (values.ts `TABLES`) and this walker turns each into
 * an object with `additionalProperties: false`; everything else is the converter's, in input
 * mode (what a file holds, before the transforms). Where the file takes a number or a boolean
 * it may also hold one environment variable reference, `"${MAX}"` (interpolate.ts), so the
 * schema takes that string there too.
 *
 *   npm run schema        # writes schema/tcprouter.schema.json (a test checks it is current)
 */
import { type ConversionConfig, type JsonSchema, toJsonSchema } from "@valibot/to-json-schema";
import type * as v from "valibot";
import { WHOLE_REFERENCE } from "./interpolate.ts";
import { ConfigSchema } from "./schema.ts";
import { TABLES } from "./values.ts";

type AnySchema = v.BaseSchema<unknown, unknown, v.BaseIssue<unknown>> & { type: string; pipe?: readonly { kind: string; type: string }[] };

const CONVERSION: ConversionConfig = {
  typeMode: "input",
  errorMode: "ignore",
  overrideSchema(context) {
    const schema = context.valibotSchema as unknown as AnySchema & Record<string, unknown>;
    switch (schema.type) {
      case "array":
        return { ...context.jsonSchema, items: walk(schema.item as AnySchema) };
      case "record":
        return { type: "object", additionalProperties: walk(schema.value as AnySchema) };
      case "optional":
        return walk(schema.wrapped as AnySchema);
      case "lazy":
        return alternatives(schema.getter as (input: unknown) => AnySchema);
      case "custom":
        return {};
      default:
        return undefined;
    }
  },
};

/** A valibot schema of the config file as JSON Schema. */
function walk(schema: AnySchema): JsonSchema {
  const table = TABLES.get(schema);
  if (table !== undefined) {
    const properties: Record<string, JsonSchema> = {};
    const required: string[] = [];
    for (const [key, entry] of Object.entries(table.entries)) {
      properties[key] = walk(entry as AnySchema);
      if ((entry as AnySchema).type !== "optional") required.push(key);
    }
    return { type: "object", properties, ...(required.length > 0 ? { required } : {}), additionalProperties: false };
  }
  const pipe = schema.pipe;
  // A pipe that starts with a table (then checks and transforms) is that table.
  if (pipe !== undefined && pipe[0] !== undefined && TABLES.has(pipe[0])) return walk(pipe[0] as unknown as AnySchema);
  // A pipe that starts with a custom check (`isRecord`) holds the real shape in its next schema.
  if (pipe !== undefined && pipe[0]?.type === "custom") {
    const next = pipe.find((item, index) => index > 0 && item.kind === "schema");
    if (next !== undefined) return walk(next as unknown as AnySchema);
  }
  const converted = { ...(toJsonSchema(schema as never, CONVERSION) as Record<string, unknown>) };
  delete converted.$schema;
  return converted as JsonSchema;
}

/** A lazy schema (chosen by the input's shape) as the schemas it can choose. */
function alternatives(getter: (input: unknown) => AnySchema): JsonSchema {
  const seen = new Set<AnySchema>();
  for (const sample of ["", 0, [], {}, { srv: "" }]) seen.add(getter(sample));
  const options = [...seen].map(walk);
  return options.length === 1 ? options[0]! : { anyOf: options };
}

/** Each number or boolean of the schema as itself or a `"${NAME}"` string (`definitions.reference`). */
function withReferences(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withReferences);
  if (node === null || typeof node !== "object") return node;
  const out = Object.fromEntries(Object.entries(node).map(([key, value]) => [key, withReferences(value)]));
  return ["number", "integer", "boolean"].includes(out.type as string) ? { anyOf: [out, { $ref: "#/definitions/reference" }] } : out;
}

/** The whole config file's JSON Schema. */
export function configJsonSchema(): JsonSchema {
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    $id: "https://tcprouter.invalid/schema/tcprouter.schema.json",
    title: "tcprouter config",
    description: "A tcprouter config file (TOML or JSON): listeners, backends, targets, health checks, admin. Reference: docs/config.md.",
    ...(withReferences(walk(ConfigSchema as unknown as AnySchema)) as JsonSchema),
    definitions: {
      reference: {
        type: "string",
        pattern: WHOLE_REFERENCE.source,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${NAME} syntax
        description: 'an environment variable holding the value: "${NAME}" or "${NAME:-default}"',
      },
    },
  };
}

if (import.meta.main) process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
