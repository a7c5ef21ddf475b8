// The `[standby]` config sections of a dual active-standby pair as the drill and the tests write
// them (docs/replication.md shows the same keys for operators).

/** A standby datanode's section: releases received entries every `releaseIntervalMs`. */
export function standbyRoleToml(releaseIntervalMs = 300): string {
  return `[standby]\nrole = "standby"\nrelease_interval_ms = ${releaseIntervalMs}`;
}

/** A primary datanode's section: ships to the standby datanodes at `standbyAddrs` in `mode`. */
export function primaryRoleToml(standbyAddrs: readonly string[], mode: 'async' | 'sync' = 'async', shipIntervalMs = 50): string {
  return `[standby]\nrole = "primary"\nmode = "${mode}"\naddrs = [${standbyAddrs.map((a) => `"${a}"`).join(', ')}]\nship_interval_ms = ${shipIntervalMs}`;
}
