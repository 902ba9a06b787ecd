/**
 * Every kind of operation and its ordered steps. The workflow files implement these steps; the runner
 * records each one, so after a crash it knows exactly where an operation was. Tests read this list to
 * kill the platform at every step boundary.
 */
const PROVISION = ['create-volume', 'unlock', 'initialize', 'start', 'set-admin-password', 'first-backup', 'subscribe-events', 'serve'];

export const WORKFLOW_STEPS = {
  Create: PROVISION,
  Restore: PROVISION,
  GeoRestore: PROVISION,
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
} as const satisfies Record<string, readonly string[]>;

export type OperationKind = keyof typeof WORKFLOW_STEPS;
export type StepName<K extends OperationKind> = (typeof WORKFLOW_STEPS)[K][number];
