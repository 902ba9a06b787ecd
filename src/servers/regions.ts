import { ApiError } from '../lib/errors.js';

/** Azure's region pairs (the ones pgbyok offers): geo-redundant backups go to the pair. */
export const PAIRED_REGIONS: Record<string, string> = {
  eastus: 'westus', westus: 'eastus', eastus2: 'centralus', centralus: 'eastus2', westus2: 'westcentralus', westcentralus: 'westus2',
  northeurope: 'westeurope', westeurope: 'northeurope', uksouth: 'ukwest', ukwest: 'uksouth', japaneast: 'japanwest', japanwest: 'japaneast',
};

export const REGIONS = Object.keys(PAIRED_REGIONS);

/** A region pgbyok offers, or ARM's refusal naming the ones it does. */
export function requireRegion(location: string | undefined): string {
  const l = (location ?? '').toLowerCase().replace(/\s+/g, '');
  if (!REGIONS.includes(l)) {
    throw new ApiError(400, 'LocationNotAvailableForResourceType',
      `The provided location '${location ?? ''}' is not available for resource type 'Microsoft.DBforPostgreSQL/flexibleServers'. List of available regions for the resource type is '${REGIONS.join(',')}'.`);
  }
  return l;
}
