/** The library API. */
export { forward, DEFAULTS, OptionsError, ListenError } from "./router.ts";
export type { ForwardOptions, ForwardHandle, Stats, StopSummary } from "./router.ts";
export { parseAddress, formatAddress, AddressError } from "./address.ts";
export type { Address } from "./address.ts";
export { parseDuration, DurationError } from "./duration.ts";
export { createLogger } from "./log.ts";
export type { Logger, LogLevel, LogFormat } from "./log.ts";
export type { CloseReason } from "./session.ts";
