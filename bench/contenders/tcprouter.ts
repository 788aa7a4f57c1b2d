/**
 * tcprouter as a contender: the command (`bun run src/cli.ts`, or `--tcprouter-cmd`), its
 * version, and the two ways the suites start it: plain forwarding (`--listen … --to …`) and a
 * generated `--config` file.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HOST, freePort } from "../runner/net.ts";
import { workDir } from "../runner/procs.ts";
import { ROOT, launch, withFreshPorts, type Instance } from "./launch.ts";

/** `bun run src/cli.ts`, with the running bun where `bun` is not on the PATH. */
export const DEFAULT_TCPROUTER_CMD = `${Bun.which("bun") ? "bun" : process.execPath} run src/cli.ts`;

/** `tcprouter 0.1.0`, from package.json. */
export async function tcprouterVersion(): Promise<string> {
  const pkg = (await Bun.file(join(ROOT, "package.json"))
    .json()
    .catch(() => ({}))) as { version?: string };
  return `tcprouter ${pkg.version ?? "?"}`;
}

/** Why the default command cannot run here; undefined when it can (or another command is given). */
export function tcprouterMissing(cmd: string | undefined): string | undefined {
  return cmd === undefined && !existsSync(join(ROOT, "src/cli.ts")) ? "src/cli.ts not found" : undefined;
}

/**
 * `command --listen 127.0.0.1:PORT --to 127.0.0.1:TARGET --log-level warn` plus `extra` flags,
 * run by bash from the repo root; `command` is a shell word list (`bun run src/cli.ts`, `dist/tcprouter`).
 */
export function startForward(command: string, targetPort: number, tag: string, extra = ""): Promise<Instance> {
  return withFreshPorts(async () => {
    const port = await freePort();
    const line = `exec ${command} --listen ${HOST}:${port} --to ${HOST}:${targetPort} --log-level warn${extra}`;
    return launch(tag, ["bash", "-c", line], port, ROOT);
  });
}

/**
 * `command --config <tag>.toml<flags> --log-level warn`, the config written by `config(port)`
 * for a fresh port in the run's temp dir.
 */
export async function startWithConfig(command: string, tag: string, config: (port: number) => string, flags = ""): Promise<Instance> {
  const port = await freePort();
  const file = join(workDir(), `${tag}.toml`);
  writeFileSync(file, config(port));
  return launch(tag, ["bash", "-c", `exec ${command} --config ${file}${flags} --log-level warn`], port, ROOT);
}
