// Plugs a datanode's part in a dual active-standby pair (its `[standby]` config section) into
// the datanode: the primary's shipper or the standby's receiver, as the Admin methods, the client
// write gate and the loops the datanode starts and stops (docs/replication.md).
import { type Clock, type TimedClock, systemClock, wallClock } from '../common/clock.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Datanode, StandbyAttachment } from '../datanode/datanode.js';
import { unary } from '../rpc/status.js';
import { Receiver } from './receiver.js';
import { Shipper } from './shipper.js';
import { siteCredentials } from './site-credentials.js';

/** Attaches the standby role of `dn`'s config, if any; call before dn.start(). */
export function attachStandby(dn: Datanode, clock: TimedClock = systemClock, wall: Clock = wallClock): void {
  const cfg = dn.config.standby;
  if (!cfg) return;
  const log = dn.log.child({ component: `standby-${cfg.role}` });
  const dataDir = dn.config.node.data_dir;
  const refuse = (why: string) =>
    unary(async (): Promise<never> => {
      throw new RegionDbError(ErrorCode.Config, why);
    }, log);
  let attachment: StandbyAttachment;
  if (cfg.role === 'primary') {
    const shipper = new Shipper(dn, { addrs: cfg.addrs, addrOverrides: cfg.addr_overrides, mode: cfg.mode, shipIntervalMs: cfg.ship_interval_ms, dataDir, clusterId: dn.config.cluster_id, site: siteCredentials(cfg, () => dn.peerCredentials, log) }, log, clock, wall, dn.registry);
    attachment = {
      admin: {
        StandbyShip: refuse(`node ${dn.nodeId} is a primary (its [standby] role), not a standby: it does not take a stream`),
        StandbyStatus: unary(async () => ({ node_id: String(dn.nodeId), role: shipper.role(), regions: [], shipping: shipper.status(), fence_epoch: String(shipper.fenceEpoch()), mode: cfg.mode }), log),
        StandbyPromote: refuse(`node ${dn.nodeId} is a primary: only a standby is promoted`),
        StandbyFreeze: refuse(`node ${dn.nodeId} is a primary: only a standby is promoted`),
        StandbyUnfreeze: refuse(`node ${dn.nodeId} is a primary: only a standby's promotion is aborted`),
        StandbySeedObject: refuse(`node ${dn.nodeId} is a primary (its [standby] role), not a standby: it is not seeded`),
        StandbySeed: refuse(`node ${dn.nodeId} is a primary (its [standby] role), not a standby: it is not seeded`),
      },
      writeGate: shipper.writeGate,
      logRetainFrom: (regionId) => shipper.logRetainFrom(regionId),
      beforeDestroy: (regionId) => shipper.sealForDrop(regionId),
      start: () => shipper.start(),
      stop: () => shipper.stop(),
    };
  } else {
    const receiver = new Receiver(dn, { releaseIntervalMs: cfg.release_interval_ms, dataDir }, log, clock, wall, dn.registry);
    attachment = {
      admin: {
        StandbyShip: unary((req) => receiver.ship(req), log),
        StandbyStatus: unary(async (req) => (req.fence_check ? receiver.fenceCheckResponse() : receiver.statusResponse()), log),
        StandbyPromote: unary(async (req) => ({ regions: await receiver.promote(req) }), log),
        StandbyFreeze: unary(async (req) => ({ regions: await receiver.freeze(req.region_ids) }), log),
        StandbyUnfreeze: unary(async () => ({ regions: await receiver.unfreeze() }), log),
        StandbySeedObject: unary((req) => receiver.seedObject(req), log),
        StandbySeed: unary((req) => receiver.seed(req), log),
      },
      writeGate: receiver.writeGate,
      start: () => receiver.start(),
      stop: () => receiver.stop(),
    };
  }
  dn.standby = attachment;
}
