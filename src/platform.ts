import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { lookup } from 'node:dns/promises';
import { freePort, plannedPorts } from './lib/ports.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import pino, { type Logger } from 'pino';
import { createAuditLog } from './audit/audit.js';
import { createBarrier, loadOrCreateMasterKey } from './barrier/barrier.js';
import { createIdentityRepo } from './identity/identity.repo.js';
import { createIdentityService } from './identity/identity.service.js';
import { createTokenService, hsmAudiences, RESOURCES, vaultAudiences } from './identity/tokens.js';
import {
  ensureHomeDirs, homePaths, originOf, readSettings, writeFileAtomic, writeSettings, type HomePaths, type Settings,
} from './lib/home.js';
import { ensureTls, ensureVaultCertificate, issueServerCertificate } from './pki/ca.js';
import { createNames, type Names } from './lib/names.js';
import { openDb } from './store/db.js';
import { buildPlatformApp } from './api/platform-app.js';
import { platformSetting } from './api/platform-settings.routes.js';
import { loadConfig, type Config } from './lib/config.js';
import { errors } from './lib/errors.js';
import { acquireHomeLock } from './lib/home-lock.js';
import { systemClock, type Clock } from './lib/clock.js';
import { createEventBus } from './vault/events.js';
import { createKeyService } from './vault/keys.service.js';
import { createRsaPool } from './vault/rsa-pool.js';
import { createVaultRepo } from './vault/vault.repo.js';
import { buildVaultApp } from './vault/vault.routes.js';
import { createVaultService } from './vault/vaults.service.js';
import { createDirectory } from './keyaccess/directory.js';
import { createKeyAccess } from './keyaccess/key-access.js';
import { createMonitoring } from './servers/monitoring.js';
import { createInsights, type Insights } from './insights/insights.service.js';
import { createServersRepo } from './servers/servers.repo.js';
import { createServersService } from './servers/servers.service.js';
import { createServerRuntime } from './servers/runtime.js';
import { createKeyLocator } from './keyaccess/encryption.js';
import { createBackupsService } from './backups/backups.service.js';
import { readFileSync } from 'node:fs';
import { createArmRepo } from './arm/arm.repo.js';
import { createArmService, resourceId } from './arm/arm.service.js';
import { createRoleAssignmentService } from './arm/role-assignments.service.js';
import { createDataPlaneAuthz } from './vault/data-plane-authz.js';
import { VAULT_TYPE } from './api/vault-resources.routes.js';
import type { Vault } from './vault/vault.types.js';
import { createTokenProvider } from './hsm/token-provider.js';
import { createHsmKeys } from './hsm/hsm-keys.js';
import { createHsmRbacRepo } from './hsm/hsm-rbac.repo.js';
import { createLocalRbac } from './hsm/local-rbac.js';
import { createHsmService } from './hsm/hsms.service.js';
import { createHsmDataPlane } from './hsm/hsm-data-plane.js';

const HOST = '127.0.0.1';
/** The vault listener answers on both loopback addresses: names under `localhost` resolve to ::1 first. */
const VAULT_HOSTS = ['127.0.0.1', '::1'];

export interface PlatformOptions {
  home: string;
  port?: number;
  location?: string;
  logger?: Logger;
  /** The validated settings; read from the environment when not given. */
  config?: Config;
  /** Serve vaults and managed HSMs only: no server is created (the host may lack what servers need). */
  vaultsOnly?: boolean;
  /** The source of "now" for tokens, key validity, rotation, expiry events and purges (default: the system clock). */
  clock?: Clock;
}

export interface Platform {
  paths: HomePaths;
  settings: Settings;
  origin: string;
  /** The DNS names of vaults (on the one vault port) and servers. */
  names: Names;
  /** Every route of the platform port and of the vault port, with the scope that secures it. */
  routes(): { app: 'platform' | 'vault'; method: string; url: string; securedBy: string; kind: string }[];
  /** One scheduler pass now (signing-key rotation, key auto-rotation, expiry events, purges), as the interval runs it. */
  tick(): Promise<void>;
  /** Azure Monitor of the platform (tests flush its diagnostic streaming). */
  insights: Insights;
  close(): Promise<void>;
}

/** The admin credential file: the CLI's default principal, readable by root only. */
export interface AdminCredential {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  objectId: string;
  authorityHost: string;
}

/**
 * Starts everything in one process: identity + management on the platform port, one HTTPS listener for
 * every vault (routed by host name, `NAME.vault.<domain>`), the scheduler. First start creates `$PGBYOK_HOME`: master key, CA and certificates, the default
 * tenant and its bootstrap administrator credential (0600).
 */
export async function startPlatform(opts: PlatformOptions): Promise<Platform> {
  const config = opts.config ?? loadConfig();
  const paths = homePaths(opts.home);
  ensureHomeDirs(paths);
  // One platform per home: a second `up` on the same home stops here, before it opens anything.
  const releaseLock = acquireHomeLock(paths.root);
  try {
    return await startLocked(opts, config, paths, releaseLock);
  } catch (e) {
    releaseLock();
    throw e;
  }
}

async function startLocked(opts: PlatformOptions, config: Config, paths: HomePaths, releaseLock: () => void): Promise<Platform> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? pino({ level: config.PGBYOK_LOG_LEVEL }, pino.destination({ dest: join(paths.logs, 'pgbyok.log'), mkdir: true, sync: false }));

  let settings = readSettings(paths);
  // The one vault port, like the platform port chosen at first start and then kept: 443 as root, else a free port.
  const planned = plannedPorts({ flag: opts.port, settings, config, root: process.getuid?.() === 0 });
  const port = planned.port ?? await freePort();
  const origin = originOf(HOST, port);
  const vaultPort = planned.vaultPort ?? await freePort(new Set([port]));
  const names = createNames(config.PGBYOK_DOMAIN, vaultPort);

  const barrier = createBarrier(loadOrCreateMasterKey(paths.masterKey));
  const tls = await ensureTls(paths);
  const vaultTls = await ensureVaultCertificate(paths, names.certificateNames());
  const db = openDb(paths.db);

  const tokens = createTokenService(db, barrier, {
    origin,
    lifetimeSeconds: config.PGBYOK_TOKEN_LIFETIME_SECONDS,
    keyRotationSeconds: config.PGBYOK_SIGNING_KEY_ROTATION_SECONDS,
    clockToleranceSeconds: config.PGBYOK_CLOCK_TOLERANCE_SECONDS,
    clock,
    audiences: [...vaultAudiences(names), ...hsmAudiences(names), RESOURCES.management],
  });
  await tokens.rotateIfDue();
  const identityRepo = createIdentityRepo(db);
  const identity = createIdentityService({ repo: identityRepo, tokens, defaultLocation: opts.location ?? settings?.defaultLocation ?? 'eastus' });

  // Bootstrap: the credential is on disk before the tenant is committed (see createTenant).
  let defaultTenant = settings?.defaultTenantId ? identityRepo.tenant(settings.defaultTenantId) : identityRepo.tenantByName('default');
  if (!defaultTenant) {
    const { tenant } = await identity.createTenant('default', (t, admin) => {
      const cred: AdminCredential = {
        tenantId: t.id, clientId: admin.principal.clientId, clientSecret: admin.clientSecret, objectId: admin.principal.objectId, authorityHost: origin,
      };
      writeFileAtomic(paths.adminCredential, JSON.stringify(cred, null, 2) + '\n', 0o600);
    });
    defaultTenant = tenant;
  }
  if (!existsSync(paths.adminCredential)) logger.warn('the bootstrap admin credential file is missing; use a principal you created');

  // The platform's own tenant and service principal: it owns the service-managed keys' vaults. Customers'
  // tenants never see it; its credential is a 0600 file like the administrator's.
  const platformCredentialPath = join(paths.root, 'secrets', 'platform.json');
  const writePlatformCredential = (tenantId: string, clientId: string, clientSecret: string) =>
    writeFileAtomic(platformCredentialPath, JSON.stringify({ tenantId, clientId, clientSecret }, null, 2) + '\n', 0o600);
  const systemTenant = identityRepo.tenantByName('pgbyok-system');
  if (!systemTenant) {
    await identity.createTenant('pgbyok-system', (t, admin) => writePlatformCredential(t.id, admin.principal.clientId, admin.clientSecret));
  } else if (!existsSync(platformCredentialPath)) {
    const sp = identityRepo.principalByName(systemTenant.id, 'ServicePrincipal', 'pgbyok-admin')!;
    writePlatformCredential(systemTenant.id, sp.clientId, await identity.resetSecret(sp));
  }
  const platformCredential = JSON.parse(readFileSync(platformCredentialPath, 'utf8')) as { tenantId: string; clientId: string; clientSecret: string };
  const keptVaultPort = settings?.vaultPort;
  settings = { port, host: HOST, vaultPort, domain: names.domain, defaultLocation: opts.location ?? settings?.defaultLocation ?? 'eastus', defaultTenantId: defaultTenant.id };
  // The vault port is kept once its listener has opened (below): a busy 443 at first start is not remembered.
  writeSettings(paths, { ...settings, vaultPort: keptVaultPort });

  const audit = createAuditLog(db, barrier.deriveKey('audit-hmac'));
  const vaultRepo = createVaultRepo(db);
  const events = createEventBus({ repo: vaultRepo, logger, ca: tls.ca, vaultOrigin: (v) => (v.kind === 'managedHsm' ? names.hsmOrigin(v.name) : names.vaultOrigin(v.name)), clock });

  // The vault listener: one HTTPS server per loopback address, both feeding the same Fastify handler, which
  // finds the vault by the Host header. Client certificates are asked for (not required) so the platform's
  // trusted services can identify themselves to the firewall.
  let vaultHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const vaultServers: HttpsServer[] = [];
  const listenVaults = async () => {
    for (const address of VAULT_HOSTS) {
      const server = createHttpsServer({ key: vaultTls.key, cert: vaultTls.cert, ca: [tls.ca], requestCert: true, rejectUnauthorized: false }, (req, res) => vaultHandler!(req, res));
      server.keepAliveTimeout = 65_000;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(vaultPort, address, () => resolve());
        });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // A machine without IPv6 loopback still serves the vaults on 127.0.0.1.
        if (address === '::1' && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) {
          logger.warn({ address, err: (e as Error).message }, 'no IPv6 loopback; vaults are served on 127.0.0.1 only');
          continue;
        }
        throw new Error(`the vault port ${vaultPort} on ${address} cannot be opened (${code ?? (e as Error).message}); free it, or set PGBYOK_VAULT_PORT`);
      }
      vaultServers.push(server);
    }
  };
  const closeVaults = () => Promise.all(vaultServers.splice(0).map((server) => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  })));

  const principalExists = (tenantId: string, objectId: string) => identityRepo.principal(objectId)?.tenantId === tenantId;
  const vaults = createVaultService({
    repo: vaultRepo, events,
    principalExists,
    clock,
  });
  // RSA private operations run on worker threads (one per core by default; 0 runs them on the event loop).
  const rsaWorkers = config.PGBYOK_RSA_WORKERS ?? Math.min(availableParallelism(), 8);
  const rsaPool = rsaWorkers > 0 ? createRsaPool(rsaWorkers, (problem) => logger.error(problem)) : undefined;
  // Managed HSMs: their keys in the PKCS#11 token (opened on first use), their data plane under local RBAC.
  const hsmToken = createTokenProvider({
    db, barrier, dir: join(paths.root, 'hsm'), clock,
    module: config.PGBYOK_PKCS11_MODULE, label: config.PGBYOK_PKCS11_TOKEN_LABEL, pinFile: config.PGBYOK_PKCS11_PIN_FILE,
    keysExist: () => vaultRepo.anyHsm(),
  });
  const hsmKeys = createHsmKeys({ tokens: hsmToken });
  const localRbac = createLocalRbac(createHsmRbacRepo(db), clock);
  const hsms = createHsmService({
    vaults: createVaultService({
      repo: vaultRepo, events, clock, kind: 'managedHsm',
      principalExists,
      purged: (v, ids) => {
        const own = [v.hsm?.domainKeyId, v.hsm?.transferKeyId].filter((x): x is string => !!x);
        void hsmKeys.destroy([...ids, ...own]).catch((e) => logger.error({ err: e, hsm: v.name }, 'destroying a purged HSM\'s token keys failed'));
      },
    }),
    rbac: localRbac, tokens: hsmToken, clock, hsmUri: names.hsmUri,
    principalExists,
  });
  const hsmDataPlane = createHsmDataPlane({ hsms, rbac: localRbac });
  const keys = createKeyService({ repo: vaultRepo, barrier, events, rsaPool, clock, hsm: hsmKeys });

  const arm = createArmService({ repo: createArmRepo(db), clock });
  // The vault data plane's authorization: access policies, or role assignments at the vault's scope and above.
  const vaultScope = (v: Vault) => resourceId(arm.placementOf(v.tenantId, VAULT_TYPE, v.name, v.location));
  const dataPlane = createDataPlaneAuthz({ vaults, assignmentsOf: identity.assignmentsOf, vaultScope });
  const vaultApp = buildVaultApp({
    logger, identity, vaults, keys, audit, dataPlane, platformOrigin: origin, names,
    hsm: { hsms, hsmKeys, rbac: localRbac, dataPlane: hsmDataPlane },
    serverFactory: (handler) => {
      vaultHandler = handler;
      return createHttpServer();
    },
  });
  await vaultApp.ready();

  const serversRepo = createServersRepo(db, clock);
  const insights = createInsights({
    db, audit, arm, logger, clock, home: paths.root, ca: tls.ca, streamIntervalMs: config.PGBYOK_DIAGNOSTICS_INTERVAL_MS,
    vaultUriOf: (tenantId, name) => { const v = vaults.byName(name); return v && v.tenantId === tenantId ? names.vaultUri(v.name) : undefined; },
  });
  const monitoring = createMonitoring({ insights });
  const trusted = { platformOrigin: origin, vaultResource: names.vaultResource, hsmResource: names.hsmResource, ca: tls.ca, trustedCert: tls.trustedCert, trustedKey: tls.trustedKey, platformCredential: () => platformCredential };
  // Stable across restarts (derived from the master key), so the vaults' subscriptions keep working while the platform is down and back.
  const hookCode = barrier.deriveKey('vault-events-hook-code').subarray(0, 24).toString('base64url');
  // An interval from the environment wins over the platform setting the system administrator keeps.
  const settingMs = (fromEnv: number | undefined, name: Parameters<typeof platformSetting>[1]) => () => fromEnv ?? platformSetting(serversRepo, name) * 1000;
  const directory = createDirectory(trusted);
  const runtime = createServerRuntime({ home: paths });
  const keyAccess = createKeyAccess(trusted);
  const locator = createKeyLocator(directory);
  const backups = createBackupsService({ home: paths, locator, keys: keyAccess, logger, clock });
  const servers = createServersService({
    db, repo: serversRepo, home: paths, logger, monitoring, runtime, backups, locator, clock,
    crashAfterStep: config.PGBYOK_CRASH_AFTER_STEP,
    archiveIntervalMs: () => config.PGBYOK_ARCHIVE_INTERVAL_MS,
    backupIntervalMs: () => config.PGBYOK_BACKUP_INTERVAL_MS,
    keys: keyAccess,
    directory,
    tlsFor: async (name) => ({ ...(await issueServerCertificate(paths, name, ['localhost', names.serverFqdn(name)], ['127.0.0.1', '::1'])), ca: tls.ca }),
    eventsEndpoint: () => `${origin}/hooks/vault-events?code=${hookCode}`,
    monitorIntervalMs: settingMs(config.PGBYOK_KEY_MONITOR_INTERVAL_MS, 'keyMonitorIntervalSeconds'),
    vaultGraceMs: settingMs(config.PGBYOK_VAULT_GRACE_MS, 'vaultUnreachableGraceSeconds'),
    responderTls: { key: tls.key, cert: tls.cert },
  });

  const roleAssignments = createRoleAssignmentService({
    identity, arm, onDataRoleChanged: dataPlane.onAssignmentChanged,
  });
  // Vaults only (`up --vaults-only`): every verb that makes a server is refused; existing servers are served as before.
  const refuseNewServer = async (): Promise<never> => {
    throw errors.badParameter('This platform was started with --vaults-only: it serves vaults and managed HSMs but creates no PostgreSQL servers. Run `pgbyok doctor --fix` as root, then restart `pgbyok up` without --vaults-only.', 'VaultsOnly');
  };
  const vaultsOnly = opts.vaultsOnly ?? config.PGBYOK_VAULTS_ONLY;
  const platformApp = buildPlatformApp({
    logger, tls, audit, identity, tokens, vaults, hsms, monitoring,
    servers: vaultsOnly ? { ...servers, create: refuseNewServer, createReplica: refuseNewServer, restore: refuseNewServer } : servers, insights, arm, roleAssignments, settings: serversRepo, origin, names,
    platformTenantId: () => settings!.defaultTenantId, hookCode,
  });
  await platformApp.listen({ port, host: HOST });
  try {
    await listenVaults();
  } catch (e) {
    await closeVaults();
    await platformApp.close();
    keyAccess.close();
    directory.close();
    await vaultApp.close();
    await rsaPool?.close();
    db.close();
    throw e;
  }
  if (keptVaultPort !== vaultPort) writeSettings(paths, settings);
  // The platform reaches its vaults by name like any client: say so when this machine cannot resolve them.
  try {
    await lookup(names.vaultHost('probe'));
  } catch (e) {
    logger.warn({ host: names.vaultHost('probe'), err: (e as Error).message },
      `vault names do not resolve on this machine: for the domain localhost install libnss-myhostname; otherwise add a DNS record for *.vault.${names.domain}`);
  }

  // Servers come back in the background: the platform answers at once, each server shows its own state.
  const reconciled = servers.reconcile().catch((e) => logger.error({ err: e }, 'reconcile failed'));

  // The scheduler: token-key rotation, key auto-rotation, expiry events, and purges past their date. A pass
  // asked for while one runs waits for it and then runs its own, so a caller of tick() sees a whole pass.
  let ticking: Promise<void> = Promise.resolve();
  const pass = async () => {
    try {
      await tokens.rotateIfDue();
      await keys.tick((id) => vaultRepo.vault(id));
      vaults.purgeExpired();
      hsms.purgeExpired();
    } catch (e) {
      logger.error({ err: e }, 'scheduler pass failed');
    }
  };
  const tick = () => (ticking = ticking.then(pass));
  let intervalBusy = false;
  const timer = setInterval(() => {
    if (intervalBusy) return;
    intervalBusy = true;
    void tick().finally(() => (intervalBusy = false));
  }, config.PGBYOK_SCHEDULER_INTERVAL_MS);
  timer.unref();

  logger.info({ origin, home: paths.root }, 'pgbyok platform started');
  return {
    paths,
    settings,
    origin,
    names,
    routes: () => [
      ...platformApp.securedRoutes().map((r) => ({ app: 'platform' as const, ...r })),
      ...vaultApp.securedRoutes().map((r) => ({ app: 'vault' as const, ...r })),
    ],
    tick,
    insights,
    async close() {
      clearInterval(timer);
      await ticking;
      await reconciled;
      await servers.shutdown();
      await insights.close();
      keyAccess.close();
      directory.close();
      await platformApp.close();
      await closeVaults();
      await vaultApp.close();
      await rsaPool?.close();
      await hsmToken.close();
      db.close();
      logger.flush?.();
      releaseLock();
    },
  };
}
