#!/usr/bin/env bun
/**
 * The command line. It only maps flags onto the library; every user error ends as one line
 * on stderr and exit 1.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import pkg from "../package.json" with { type: "json" };
import { forwardArgs, logArgs, observeArgs, processArgs, rejectUnknownFlags } from "./commands/args.ts";
import { configArgs } from "./commands/check.ts";
import { createLogger } from "./util/log.ts";

const main = defineCommand({
  meta: { name: "tcprouter", version: pkg.version, description: "A TCP forwarder and L4 router" },
  // The default command's flags are known here too, so that a flag value is never taken for a command name.
  args: { ...configArgs, ...forwardArgs, ...processArgs, ...observeArgs, ...logArgs },
  default: "serve",
  subCommands: {
    serve: () => import("./commands/serve.ts").then((m) => m.default),
    check: () => import("./commands/check.ts").then((m) => m.default),
    ctl: () => import("./commands/ctl.ts").then((m) => m.default),
  },
});

/** The named subcommand, or null when none is named (serve runs). */
async function subCommand(rawArgs: string[]): Promise<CommandDef | null> {
  const name = rawArgs.find((arg) => !arg.startsWith("-"));
  const subCommands = main.subCommands as Record<string, () => Promise<CommandDef>>;
  return name !== undefined && name in subCommands ? await subCommands[name]!() : null;
}

async function run(rawArgs: string[]): Promise<void> {
  const command = await subCommand(rawArgs);
  if (rawArgs.includes("--help") || rawArgs.includes("-h")) {
    const usage = command === null ? await renderUsage(main as CommandDef) : await renderUsage(command, main as CommandDef);
    console.log(process.stdout.isTTY ? usage : stripAnsi(usage));
    process.exit(0);
  }
  if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
    console.log(pkg.version);
    process.exit(0);
  }
  try {
    rejectUnknownFlags(rawArgs, (command?.args ?? main.args) as ArgsDef);
    await runCommand(main, { rawArgs });
  } catch (error) {
    createLogger().error(stripAnsi(error instanceof Error ? error.message : String(error)));
    process.exit(1);
  }
}

function stripAnsi(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC starts the colour codes it removes.
  return text.replace(/\u001b\[[0-9;]*m/g, "");
}

await run(process.argv.slice(2));
