import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { deliverWebhook } from '../lib/webhook.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { VaultRepo } from './vault.repo.js';
import type { Vault, VaultEventType } from './vault.types.js';

export interface VaultEventData {
  objectType: 'Key' | 'Vault';
  objectName: string;
  version?: string;
  nbf?: number;
  exp?: number;
}

/** A delivered event in Azure Event Grid's schema, as Key Vault publishes them. */
export interface EventGridEvent {
  id: string;
  topic: string;
  subject: string;
  eventType: VaultEventType;
  eventTime: string;
  data: { Id: string; VaultName: string; ObjectType: string; ObjectName: string; Version: string; NBF: number | null; EXP: number | null };
  dataVersion: '1';
  metadataVersion: '1';
}

export interface EventBusOptions {
  repo: Pick<VaultRepo, 'subscriptions'>;
  logger: Logger;
  ca: string;
  /** Canonical origin of a vault (an HSM's own, `NAME.managedhsm.<domain>`), for the `Id` of the object in the event. */
  vaultOrigin: (v: Vault) => string;
  retryDelaysMs?: number[];
  /** The time events carry (the platform's clock; the system clock by default). */
  clock?: Clock;
}

/**
 * Pushes vault events to webhook subscribers (Event Grid style: a JSON array POSTed with
 * `aeg-event-type: Notification`), retrying with backoff so a subscriber that blinks still hears them.
 * Delivery is asynchronous and never blocks or fails the operation that raised the event.
 */
export function createEventBus(opts: EventBusOptions) {
  return {
    emit(vault: Vault, type: VaultEventType, d: VaultEventData): EventGridEvent {
      const origin = opts.vaultOrigin(vault);
      const objectPath = d.objectType === 'Key' ? `${origin}/keys/${d.objectName}${d.version ? '/' + d.version : ''}` : origin;
      const event: EventGridEvent = {
        id: randomUUID(),
        topic: `/tenants/${vault.tenantId}/providers/Microsoft.KeyVault/${vault.kind === 'managedHsm' ? 'managedHSMs' : 'vaults'}/${vault.name}`,
        subject: d.objectName,
        eventType: type,
        eventTime: new Date((opts.clock ?? systemClock).now()).toISOString(),
        data: {
          Id: objectPath, VaultName: vault.name, ObjectType: d.objectType, ObjectName: d.objectName,
          Version: d.version ?? '', NBF: d.nbf ?? null, EXP: d.exp ?? null,
        },
        dataVersion: '1',
        metadataVersion: '1',
      };
      for (const sub of opts.repo.subscriptions(vault.id)) {
        if (sub.eventTypes.length && !sub.eventTypes.includes(type)) continue;
        deliverWebhook(sub.endpoint, [event], {
          ca: opts.ca, logger: opts.logger, retryDelaysMs: opts.retryDelaysMs, what: event.eventType,
          headers: { 'aeg-event-type': 'Notification' },
        });
      }
      return event;
    },
  };
}

export type EventBus = ReturnType<typeof createEventBus>;
