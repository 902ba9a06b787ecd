import { mkdir, open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { errors } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import { httpCall } from '../lib/http-client.js';
import type { AuditLog, AuditRecord } from '../audit/audit.js';
import type { InsightsRepo, StoredDiagnosticSetting } from './insights.repo.js';

/**
 * Diagnostic settings (api 2021-05-01-preview) of a vault: its audit records — data plane and management —
 * streamed in Azure Monitor's Key Vault `AuditEvent` resource-log schema. Azure's destinations (storage
 * accounts, Log Analytics, Event Hubs, partner solutions) do not exist on one machine; pgbyok delivers to
 * two of its own, named by extension properties:
 *
 * - `properties.webhookUrl`: batches are POSTed as `{"records": [...]}`, as Event Hubs and Azure Monitor
 *   deliver them; any 2xx is delivered.
 * - `properties.filePath`: a plain file name; the records are appended as JSON lines (one record a line) to
 *   `$PGBYOK_HOME/diagnostics/<tenantId>/<filePath>`. Nothing else on the host can be named: absolute paths,
 *   directories, `..`, and symbolic links at that place are refused.
 *
 * Delivery is at least once, in order, from a cursor: each setting keeps the audit-log sequence it has
 * delivered up to in SQLite, moved on only after a batch is delivered. A new setting starts at the end of the
 * log (records from then on). The stream runs in the background (woken by each audit record and by an
 * interval) and never holds up or fails a vault request; a failed batch is logged and tried again with
 * exponential backoff (1 s doubling to 5 min, jittered); after a restart a setting resumes from its cursor,
 * so a batch delivered just before a crash can come again (`properties.auditSequence` tells them apart).
 */

export const LOG_CATEGORIES = ['AuditEvent'] as const;
export const CATEGORY_GROUPS = ['audit', 'allLogs'] as const;
const UNDELIVERABLE = ['storageAccountId', 'workspaceId', 'eventHubAuthorizationRuleId', 'eventHubName', 'marketplacePartnerId', 'serviceBusRuleId'] as const;
const NAME_RE = /^[A-Za-z0-9][-\w.]{0,259}$/;
const FILE_RE = /^[A-Za-z0-9][\w.-]{0,127}$/;
const BATCH = 500;

/** Azure's operation names for pgbyok's vault management operations (the data-plane names already are Azure's). */
const OPERATION_NAMES: Record<string, string> = {
  VaultCreate: 'VaultPut', VaultUpdate: 'VaultPatch', VaultAccessPolicyUpdate: 'VaultPut', DeletedVaultGet: 'VaultGetDeleted', DeletedVaultList: 'VaultListDeleted',
};

export interface DiagnosticTarget { tenantId: string; resourceType: string; resourceName: string }
export interface DiagnosticBody {
  properties?: {
    logs?: { category?: string | null; categoryGroup?: string | null; enabled?: boolean; retentionPolicy?: unknown }[];
    metrics?: { category?: string; enabled?: boolean; timeGrain?: string | null; retentionPolicy?: unknown }[];
    webhookUrl?: string;
    filePath?: string;
    logAnalyticsDestinationType?: string | null;
    [k: string]: unknown;
  };
}

const streams = (p: Record<string, any>) => Array.isArray(p.logs) && p.logs.some((l: any) => l.enabled && (l.category === 'AuditEvent' || CATEGORY_GROUPS.includes(l.categoryGroup)));

export function createDiagnostics(d: {
  repo: InsightsRepo; audit: AuditLog; logger: Logger; clock: Clock; home: string; ca: string;
  /** The ARM id of a vault (upper-cased in the records, as Azure writes them), and its URI. */
  resourceIdOf: (t: DiagnosticTarget) => string;
  vaultUriOf: (tenantId: string, vault: string) => string | undefined;
  intervalMs: number;
}) {
  const backoff = new Map<string, { failures: number; nextAt: number }>();
  const keyOf = (s: Pick<StoredDiagnosticSetting, 'tenantId' | 'resourceType' | 'resourceName' | 'name'>) => `${s.tenantId}|${s.resourceType}|${s.resourceName}|${s.name}`.toLowerCase();
  const dirOf = (tenantId: string) => join(d.home, 'diagnostics', tenantId);

  const validate = (tenantId: string, name: string, body: DiagnosticBody) => {
    if (!NAME_RE.test(name)) throw errors.badParameter(`The diagnostic setting name '${name}' is invalid.`);
    const p = body.properties;
    if (!p || typeof p !== 'object') throw errors.badParameter('The diagnostic setting needs properties.');
    for (const k of UNDELIVERABLE) {
      if (p[k]) throw errors.badParameter(`pgbyok cannot deliver to ${k} from this platform; use properties.webhookUrl or properties.filePath.`, 'DestinationNotSupported');
    }
    for (const l of p.logs ?? []) {
      if (l.category && !(LOG_CATEGORIES as readonly string[]).includes(l.category)) throw errors.badParameter(`Category '${l.category}' is not supported. Supported categories: ${LOG_CATEGORIES.join(', ')}.`);
      if (l.categoryGroup && !(CATEGORY_GROUPS as readonly string[]).includes(l.categoryGroup)) throw errors.badParameter(`Category group '${l.categoryGroup}' is not supported. Supported groups: ${CATEGORY_GROUPS.join(', ')}.`);
      if (!l.category && !l.categoryGroup) throw errors.badParameter('Each logs entry names a category or a categoryGroup.');
    }
    for (const m of p.metrics ?? []) if (m.category && m.category !== 'AllMetrics') throw errors.badParameter(`Metric category '${m.category}' is not supported. Supported: AllMetrics.`);
    if (p.webhookUrl !== undefined) {
      let u: URL;
      try {
        u = new URL(String(p.webhookUrl));
      } catch {
        throw errors.badParameter(`webhookUrl '${p.webhookUrl}' is not a URL.`);
      }
      if (!['http:', 'https:'].includes(u.protocol)) throw errors.badParameter('webhookUrl must be an http(s) URL.');
    }
    if (p.filePath !== undefined && (typeof p.filePath !== 'string' || !FILE_RE.test(p.filePath) || p.filePath.includes('..'))) {
      throw errors.badParameter(`filePath '${p.filePath}' is refused: give a plain file name (letters, digits, '.', '_', '-'); the file is written under the platform's diagnostics directory of the tenant, never elsewhere on the host.`, 'FilePathNotAllowed');
    }
    if (!p.webhookUrl && !p.filePath) throw errors.badParameter('A diagnostic setting needs a destination: properties.webhookUrl or properties.filePath.', 'DestinationRequired');
    return {
      logs: (p.logs ?? []).map((l) => ({ category: l.category ?? null, categoryGroup: l.categoryGroup ?? null, enabled: !!l.enabled, retentionPolicy: { enabled: false, days: 0 } })),
      metrics: (p.metrics ?? []).map((m) => ({ category: m.category ?? 'AllMetrics', enabled: !!m.enabled, timeGrain: null, retentionPolicy: { enabled: false, days: 0 } })),
      ...(p.webhookUrl ? { webhookUrl: String(p.webhookUrl) } : {}),
      ...(p.filePath ? { filePath: p.filePath } : {}),
      logAnalyticsDestinationType: null,
    };
  };

  /** One audit record in Azure Monitor's AuditEvent shape; `uri` and `resourceId` are the setting's, found once per batch. */
  const record = (t: DiagnosticTarget, r: AuditRecord & { seq: number }, uri: string | undefined, resourceId: string) => {
    const keyId = uri && r.key ? `${uri.replace(/\/$/, '')}/keys/${r.key}${r.version ? `/${r.version}` : ''}` : undefined;
    return {
      time: r.time,
      resourceId,
      operationName: OPERATION_NAMES[r.operation] ?? r.operation,
      operationVersion: r.apiVersion ?? '',
      category: 'AuditEvent',
      resultType: r.result === 'Success' ? 'Success' : STATUS_CODES[r.httpStatus]?.replace(/\s/g, '') ?? 'Failure',
      resultSignature: STATUS_CODES[r.httpStatus] ?? String(r.httpStatus),
      resultDescription: r.errorCode ?? '',
      durationMs: String(r.durationMs ?? 0),
      callerIpAddress: r.sourceAddress,
      correlationId: r.clientRequestId ?? '',
      identity: { claim: { ...(r.callerObjectId ? { oid: r.callerObjectId, 'http://schemas.microsoft.com/identity/claims/objectidentifier': r.callerObjectId } : {}), ...(r.callerClientId ? { appid: r.callerClientId } : {}), tid: t.tenantId, ...(r.callerName ? { name: r.callerName } : {}) } },
      properties: {
        ...(keyId ? { id: keyId } : {}),
        requestUri: uri && r.surface === 'vault' ? `${uri.replace(/\/$/, '')}${r.requestPath ?? ''}${r.apiVersion ? `?api-version=${r.apiVersion}` : ''}` : r.requestPath ?? '',
        httpStatusCode: r.httpStatus,
        isAccessPolicyMatch: r.surface === 'vault' ? r.httpStatus !== 403 : true,
        clientInfo: r.clientInfo ?? '',
        isRbacAuthorized: false,
        requestId: r.requestId,
        auditSequence: r.seq,
      },
    };
  };

  const deliver = async (s: StoredDiagnosticSetting, records: unknown[]) => {
    const p = s.properties as { webhookUrl?: string; filePath?: string };
    if (p.webhookUrl) {
      const res = await httpCall({ method: 'POST', url: p.webhookUrl, ca: d.ca, timeoutMs: 10_000, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ records }) });
      if (res.status < 200 || res.status >= 300) throw new Error(`the webhook answered ${res.status}`);
    }
    if (p.filePath) {
      const dir = dirOf(s.tenantId);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const f = await open(join(dir, p.filePath), constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      try {
        await f.appendFile(records.map((r) => JSON.stringify(r)).join('\n') + '\n');
        await f.sync();
      } finally {
        await f.close();
      }
    }
  };

  /** One pass over every setting: deliver what each has not delivered yet, batch by batch, until caught up or a batch fails. */
  const pass = async () => {
    for (const s of d.repo.allDiagnosticSettings()) {
      const key = keyOf(s);
      // Everything up to here is in this pass's batches: a caught-up setting moves to it, so a quiet vault's
      // cursor does not stay behind (and get every other vault's records scanned again, pass after pass).
      const head = d.audit.lastSeq();
      if (!streams(s.properties)) {
        // A setting whose logs are all disabled collects nothing: when enabled again it starts from then.
        if (s.deliveredSeq < head) d.repo.advanceDiagnosticSetting(s, head);
        continue;
      }
      const b = backoff.get(key);
      if (b && d.clock.now() < b.nextAt) continue;
      let cursor = s.deliveredSeq;
      const uri = d.vaultUriOf(s.tenantId, s.resourceName);
      const resourceId = d.resourceIdOf(s).toUpperCase();
      for (;;) {
        const batch = d.audit.vaultOutcomesAfter(cursor, s.tenantId, s.resourceName, BATCH);
        if (!batch.length) {
          if (cursor < head) d.repo.advanceDiagnosticSetting(s, head);
          break;
        }
        try {
          await deliver(s, batch.map((r) => record(s, r, uri, resourceId)));
        } catch (err) {
          const failures = (backoff.get(key)?.failures ?? 0) + 1;
          const delay = Math.min(1000 * 2 ** (failures - 1), 300_000) * (0.5 + Math.random() / 2);
          backoff.set(key, { failures, nextAt: d.clock.now() + delay });
          d.logger.warn({ err: (err as Error).message, setting: s.name, vault: s.resourceName, failures, retryInMs: Math.round(delay) }, 'diagnostic setting delivery failed; will retry');
          break;
        }
        backoff.delete(key);
        cursor = batch[batch.length - 1].seq;
        // The setting may have been deleted while the batch was out; the update then changes nothing.
        if (batch.length < BATCH) {
          d.repo.advanceDiagnosticSetting(s, Math.max(cursor, head));
          break;
        }
        d.repo.advanceDiagnosticSetting(s, cursor);
      }
    }
  };

  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  const pump = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (running) { again = true; return running; }
    running = (async () => {
      try {
        do {
          again = false;
          await pass().catch((err) => d.logger.error({ err }, 'diagnostic streaming pass failed'));
        } while (again && !stopped);
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  // The vaults some setting streams (tenant|name): only their records wake the pump; the interval does the rest.
  let streamed = new Set<string>();
  const refreshStreamed = () => { streamed = new Set(d.repo.allDiagnosticSettings().map((x) => `${x.tenantId}|${x.resourceName.toLowerCase()}`)); };
  refreshStreamed();
  let woken = false;
  d.audit.onAppend((rec) => {
    if (rec.result === 'Started' || !rec.vault || woken || !streamed.has(`${rec.tenantId}|${rec.vault.toLowerCase()}`)) return;
    woken = true;
    setImmediate(() => { woken = false; void pump(); });
  });
  const timer = setInterval(() => void pump(), d.intervalMs);
  timer.unref();

  return {
    list: (t: DiagnosticTarget) => d.repo.diagnosticSettings(t.tenantId, t.resourceType, t.resourceName),
    get: (t: DiagnosticTarget, name: string) => d.repo.diagnosticSetting(t.tenantId, t.resourceType, t.resourceName, name),
    put(t: DiagnosticTarget, name: string, body: DiagnosticBody): { setting: StoredDiagnosticSetting; created: boolean } {
      const properties = validate(t.tenantId, name, body);
      const result = d.repo.transaction(() => {
        const existing = d.repo.diagnosticSetting(t.tenantId, t.resourceType, t.resourceName, name);
        if (existing) {
          const updated = { ...existing, properties };
          d.repo.updateDiagnosticSetting(updated);
          backoff.delete(keyOf(updated));
          return { setting: updated, created: false };
        }
        const s: StoredDiagnosticSetting = { ...t, name, properties, deliveredSeq: d.audit.lastSeq(), created: Math.floor(d.clock.now() / 1000) };
        d.repo.insertDiagnosticSetting(s);
        return { setting: s, created: true };
      });
      refreshStreamed();
      return result;
    },
    delete(t: DiagnosticTarget, name: string) {
      const r = d.repo.deleteDiagnosticSetting({ ...t, name });
      refreshStreamed();
      return r;
    },
    /** Delivers what is pending now (tests, and the interval). */
    flush: () => pump(),
    async close() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

export type Diagnostics = ReturnType<typeof createDiagnostics>;
