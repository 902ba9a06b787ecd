import { activity, ACTIVITY_OPERATIONS, type ServerKit } from '../../kit.js';
import type { Runner, Workflow } from '../runner.js';
import { deleteWorkflow } from './delete.js';
import { powerWorkflows } from './power.js';
import { promoteWorkflow } from './promote.js';
import { provisionWorkflow } from './provision.js';
import { updateWorkflow } from './update.js';

/** A failed operation is in the activity log too, with its public error (never the internal one). */
function withFailureActivity(k: ServerKit, wf: Workflow): Workflow {
  return {
    ...wf,
    async settled(op) {
      if (op.status === 'Failed') {
        activity(k, { tenantId: op.tenantId, name: op.serverName }, ACTIVITY_OPERATIONS.write, 'Failed', `${op.kind} of ${op.serverName} failed: ${op.error ?? op.errorCode}`, op.caller);
      }
      await wf.settled?.(op);
    },
  };
}

/** One workflow per kind of operation (see ../catalog.ts for their steps). */
export function registerWorkflows(k: ServerKit, runner: Runner): void {
  const all = [
    ...(['Create', 'Restore', 'GeoRestore', 'CreateReplica'] as const).map((kind) => provisionWorkflow(k, kind)),
    updateWorkflow(k), promoteWorkflow(k), deleteWorkflow(k), ...powerWorkflows(k),
  ];
  for (const wf of all) runner.register(withFailureActivity(k, wf));
}
