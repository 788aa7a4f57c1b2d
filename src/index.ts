/** The library API. */
export { forward, createRouter, forwardConfig, DEFAULTS, OptionsError, ListenError } from "./router.ts";
export type { ForwardOptions, ForwardHandle, RouterHandle, RouterOptions, BoundListener, Stats, StopSummary } from "./router.ts";
export { loadConfig, parseConfig, ConfigError } from "./config.ts";
export type { Config, ListenerConfig, BackendConfig, TargetConfig } from "./config.ts";
export type { TargetState } from "./backend.ts";
export { parseAddress, formatAddress, AddressError } from "./address.ts";
export type { Address } from "./address.ts";
export { parseDuration, DurationError } from "./duration.ts";
export { createLogger } from "./log.ts";
export type { Logger, LogLevel, LogFormat } from "./log.ts";
export type { CloseReason } from "./session.ts";
