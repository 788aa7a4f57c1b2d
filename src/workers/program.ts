/** How this program starts itself again: a worker, or the new version in an upgrade. */

/** The command line that starts this program again (a worker, or the new version in an upgrade) with `args`. */
export function programCommand(args: string[]): string[] {
  const standalone = (Bun as unknown as { isStandaloneExecutable?: boolean }).isStandaloneExecutable === true || !process.argv[1]?.endsWith(".ts");
  return standalone ? [process.execPath, ...args] : [process.execPath, "run", process.argv[1]!, ...args];
}
