// How a primary site's shipper authenticates to its standby site (docs/replication.md, "Between
// the sites"). The sites are separate clusters with their own CAs and users, usually across an
// untrusted network, so the shipper does not use this node's cluster credentials there unless
// told to: `[standby.tls]` names the standby site's CA (and a client certificate that CA signed),
// `[standby.auth]` a user of the standby site with the `replicator` role (password or token, read
// from files so the config holds no secret). Without either, the node's own [tls] credentials are
// used and no user is sent (the sites share a CA, or run plaintext on a trusted network).
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import type { DatanodeConfig } from '../common/config.js';
import { ErrorCode, RegionDbError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { authorizationHeader } from '../rpc/auth.js';
import type { ClientSecurity } from '../rpc/server.js';
import { CertificateFiles, channelCredentials } from '../rpc/tls.js';

type StandbySection = NonNullable<DatanodeConfig['standby']>;

export interface SiteCredentials extends ClientSecurity {
  /** What the shipper presents, for logs and error hints (no secrets). */
  readonly describe: string;
  close(): void;
}

function readSecret(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new RegionDbError(ErrorCode.Config, `[standby.auth] ${what} ${file}: ${(err as Error).message}`);
  }
  if (text.length === 0) throw new RegionDbError(ErrorCode.Config, `[standby.auth] ${what} ${file} is empty`);
  return text;
}

/**
 * Reads the files now (a missing or broken one is a startup error naming it). `nodeCredentials`
 * is asked at the first call (a datanode makes its own credentials when it starts).
 */
export function siteCredentials(cfg: StandbySection, nodeCredentials: () => grpc.ChannelCredentials, log: Logger): SiteCredentials {
  const tls = cfg.tls ? new CertificateFiles({ caFile: cfg.tls.ca_file, certFile: cfg.tls.cert_file, keyFile: cfg.tls.key_file }, log) : undefined;
  const auth = cfg.auth;
  const authorization = auth
    ? auth.token_file
      ? authorizationHeader({ token: readSecret(auth.token_file, 'token_file') })
      : authorizationHeader({ user: auth.user, password: readSecret(auth.password_file ?? '', 'password_file') })
    : undefined;
  const parts = [
    tls ? `TLS with the standby site's CA ${cfg.tls?.ca_file}${tls.hasIdentity ? ` and client certificate ${cfg.tls?.cert_file}` : ', no client certificate'}` : "this node's own [tls] credentials (or plaintext)",
    auth ? (auth.token_file ? `a token (${auth.token_file})` : `user ${auth.user}`) : 'no user',
  ];
  return {
    get credentials() {
      return tls ? channelCredentials(tls) : nodeCredentials();
    },
    authorization,
    describe: parts.join(', '),
    close: () => tls?.close(),
  };
}

const TLS_FAILURE = /certificate|handshake|SSL|TLS|self[- ]signed|alert/i;

/**
 * The shipper's error as its status shows it: a refusal or a failed handshake says what the
 * standby site wants and which config section gives it (an auth problem must not look like a
 * network stall).
 */
export function explainStandbyError(code: ErrorCode, message: string, presented: string): string {
  if (code === ErrorCode.Unauthenticated) return `the standby site refused the shipper's credentials (${presented}): ${message} — set [standby.auth] (a replicator user of the standby site) or [standby.tls] (a client certificate its CA signed)`;
  if (code === ErrorCode.PermissionDenied) return `the standby site denied the shipper (${presented}): ${message} — the [standby.auth] user needs the replicator role there`;
  if (code === ErrorCode.Unavailable && TLS_FAILURE.test(message)) return `TLS with the standby site failed (${presented}): ${message} — [standby.tls] ca_file must be the standby site's CA`;
  return message;
}
