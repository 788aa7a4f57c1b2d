/**
 * The layering of src/: a folder may import only the folders before it in LAYERS (and itself).
 * A cycle that crossed a folder would need an import upwards, so none can. Type-only imports count too (tsPreCompilationDeps).
 * Run: npm run lint:layers
 */
const LAYERS = ["util", "protocol", "config", "backend", "proxy", "observe", "workers", "commands"];

const forbidden = LAYERS.map((layer, index) => ({
  name: `${layer}-imports-only-below`,
  comment: `src/${layer}/ may import only ${LAYERS.slice(0, index).join(", ") || "nothing else in src"} (see docs/architecture.md)`,
  severity: "error",
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${[...LAYERS.slice(index + 1), "[^/]+\\.ts$"].join("|")})` },
}));


// The accept path imports one way: router → listener → session → connector, preface, pipe.
forbidden.push({
  name: "no-circular-in-proxy",
  comment: "src/proxy/ has no import circle (see docs/architecture.md, the stages)",
  severity: "error",
  from: { path: "^src/proxy/" },
  to: { path: "^src/proxy/", circular: true },
});

forbidden.push({
  name: "not-to-unresolvable",
  severity: "error",
  from: {},
  to: { couldNotResolve: true },
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".json", ".d.ts"], conditionNames: ["import", "types", "default"], mainFields: ["module", "types", "main"] },
  },
};
