/**
 * The operations contract the crash matrix is written against (issue 10): the workflow kinds and their
 * ordered steps, the operation resource, and the fail point. The platform exports its own step list from
 * `dist/src/servers/operations/catalog.js`; the matrix checks it equals this copy before it kills anything.
 */
export const WORKFLOW_STEPS: Record<string, string[]> = {
  Create: ['create-volume', 'unlock', 'initialize', 'start', 'set-admin-password', 'first-backup', 'subscribe-events', 'serve'],
  Restore: ['create-volume', 'unlock', 'initialize', 'start', 'set-admin-password', 'first-backup', 'subscribe-events', 'serve'],
  GeoRestore: ['create-volume', 'unlock', 'initialize', 'start', 'set-admin-password', 'first-backup', 'subscribe-events', 'serve'],
  CreateReplica: ['create-volume', 'unlock', 'initialize', 'start', 'await-streaming', 'subscribe-events', 'serve'],
  Update: ['wrap-pending', 'commit-wrap', 'rewrap-backups', 'subscribe-events', 'grow-storage', 'set-admin-password', 'revalidate', 'finish'],
  Stop: ['shutdown', 'finish'],
  Start: ['bring-up', 'finish'],
  Restart: ['restart'],
  Revalidate: ['bring-up', 'finish'],
  Promote: ['promote', 'release-source', 'record-primary', 'first-backup', 'finish'],
  Delete: ['shutdown', 'detach-replicas', 'release-source', 'unsubscribe-events', 'delete-backups', 'destroy-volume', 'remove-server'],
  Backup: ['base-backup'],
  ParameterUpdate: ['apply'],
};

export type OperationStatus = 'Queued' | 'InProgress' | 'Succeeded' | 'Failed' | 'Cancelled';
export type StepStatus = 'Pending' | 'InProgress' | 'Succeeded' | 'Failed' | 'Skipped';

export interface OperationResource {
  id: string;
  name: string;
  status: OperationStatus;
  operation: string;
  resource: string;
  startTime: string;
  endTime?: string;
  error?: { code: string; message: string };
  steps: { seq: number; name: string; status: StepStatus; attempts: number }[];
}

export const OPEN: OperationStatus[] = ['Queued', 'InProgress'];

/** The environment variable of the fail point, and its value for a kind and a boundary. */
export const CRASH_ENV = 'PGBYOK_CRASH_AFTER_STEP';
export const crashPoint = (kind: string, boundary: string) => `${kind}:${boundary}`;

/** Every boundary of a kind: right after acceptance, then right after each step. */
export const boundariesOf = (kind: string) => ['accepted', ...WORKFLOW_STEPS[kind]];

/** The platform's own step list, or why it cannot be had (the engine is not there yet). */
export async function platformSteps(): Promise<{ steps?: Record<string, string[]>; error?: string }> {
  // A specifier tsc does not resolve: the module exists only once the operations engine has landed.
  const specifier = ['..', '..', 'src', 'servers', 'operations', 'catalog.js'].join('/');
  try {
    const mod = await import(specifier);
    if (!mod.WORKFLOW_STEPS) return { error: `${specifier} exports no WORKFLOW_STEPS` };
    return { steps: mod.WORKFLOW_STEPS as Record<string, string[]> };
  } catch (e) {
    return { error: `the operations engine's catalog cannot be loaded (${specifier}): ${(e as Error).message}` };
  }
}
