import type { Server } from '../servers/model/server.js';
import type { Vault } from '../vault/vault.types.js';

/**
 * Microsoft.ResourceHealth availability statuses (api 2022-10-01 / 2025-05-01 shape) of servers and vaults.
 * A server that is Inaccessible because its customer-managed key cannot be used is Unavailable, with the key
 * problem in the summary (customer initiated: the key's owner has to act); Ready is Available, Degraded
 * while the key vault is unreachable and the grace period runs; Stopped is Unavailable (customer initiated);
 * a server in a transition (Provisioning, Starting, Stopping, Updating, Dropping) is Unknown, as Azure shows
 * a resource it has no current signal for.
 */

export type AvailabilityState = 'Available' | 'Unavailable' | 'Degraded' | 'Unknown';
export interface Health { availabilityState: AvailabilityState; title: string; summary: string; reasonType?: string; reasonChronicity?: string; detailedStatus?: string; occuredTime: string }

export function serverHealth(s: Server): Health {
  const occuredTime = new Date(s.updated * 1000).toISOString();
  switch (s.state) {
    case 'Ready':
      if (s.keyUnreachableSince) {
        return { availabilityState: 'Degraded', title: 'Degraded', summary: 'The key vault holding the server\'s customer-managed key cannot be reached; the server keeps running during the grace period and becomes inaccessible if the key stays unreachable.', reasonType: 'Unplanned', reasonChronicity: 'Transient', detailedStatus: 'KeyVaultUnreachable', occuredTime: new Date(s.keyUnreachableSince).toISOString() };
      }
      return { availabilityState: 'Available', title: 'Available', summary: 'There aren\'t any known Azure platform problems affecting this resource.', reasonChronicity: 'Persistent', detailedStatus: '', occuredTime };
    case 'Inaccessible':
      return {
        availabilityState: 'Unavailable', title: 'Unavailable: the customer-managed key cannot be used',
        summary: `The server is inaccessible because its data encryption key cannot be used: ${s.inaccessibleReason ?? 'the key or the identity that reads it is not usable'}. Restore access to the key (enable it, restore its permissions or the identity), then revalidate the server.`,
        reasonType: 'Customer Initiated', reasonChronicity: 'Persistent', detailedStatus: 'CustomerManagedKeyInaccessible', occuredTime,
      };
    case 'Stopped':
      return { availabilityState: 'Unavailable', title: 'Stopped', summary: 'The server was stopped. Start the server to make it available.', reasonType: 'Customer Initiated', reasonChronicity: 'Persistent', detailedStatus: 'ServerStopped', occuredTime };
    default:
      return { availabilityState: 'Unknown', title: 'Unknown', summary: `The server is ${s.state}; its health is reported again when that completes.`, reasonChronicity: 'Transient', detailedStatus: `Server${s.state}`, occuredTime };
  }
}

export function vaultHealth(v: Vault): Health {
  return { availabilityState: 'Available', title: 'Available', summary: 'There aren\'t any known Azure platform problems affecting this resource.', reasonChronicity: 'Persistent', detailedStatus: '', occuredTime: new Date(v.updated * 1000).toISOString() };
}

export const availabilityStatusWire = (resourceId: string, location: string, h: Health, now: Date) => ({
  id: `${resourceId}/providers/Microsoft.ResourceHealth/availabilityStatuses/current`,
  name: 'current',
  type: 'Microsoft.ResourceHealth/AvailabilityStatuses',
  location,
  properties: {
    availabilityState: h.availabilityState, title: h.title, summary: h.summary, detailedStatus: h.detailedStatus ?? '',
    ...(h.reasonType ? { reasonType: h.reasonType } : {}), reasonChronicity: h.reasonChronicity ?? 'Persistent',
    occuredTime: h.occuredTime, reportedTime: now.toISOString(), category: h.availabilityState === 'Available' ? 'Not Applicable' : 'Unplanned',
    context: h.availabilityState === 'Available' ? 'Not Applicable' : 'Customer',
  },
});
