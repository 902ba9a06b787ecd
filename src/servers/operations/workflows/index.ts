import { converge } from '../../converge.js';
import { activity, ACTIVITY_OPERATIONS, type ServerKit } from '../../kit.js';
import type { Runner, Workflow } from '../runner.js';
import { deleteWorkflow } from './delete.js';
import { powerWorkflows } from './power.js';
import { promoteWorkflow } from './promote.js';
import { provisionWorkflow } from './provision.js';
import { updateWorkflow } from './update.js';

/**
 * After every operation, however it ended: a failure goes into the activity log with its public error
 * (never the internal one), and the server converges to its recorded state (a front door a crash took
 * away is back; a half-built server goes to a Delete). A Delete that failed is not repeated at once: the
 * next start resumes it.
 */
function settling(k: ServerKit, wf: Workflow): Workflow {
  return {
    ...wf,
    async settled(op) {
      if (op.status === 'Failed') {
        activity(k, { tenantId: op.tenantId, name: op.serverName }, ACTIVITY_OPERATIONS.write, 'Failed', `${op.kind} of ${op.serverName} failed: ${op.error ?? op.errorCode}`, op.caller);
      }
      await wf.settled?.(op);
      const s = k.repo.byId(op.serverId);
      if (!s || (s.state === 'Dropping' && op.kind === 'Delete') || k.runner.hasOpen(s.name)) return;
      await converge(k, s);
    },
  };
}

/** One workflow per kind of operation (see ../catalog.ts for their steps). */
export function registerWorkflows(k: ServerKit, runner: Runner): void {
  const all = [
    ...(['Create', 'Restore', 'GeoRestore', 'CreateReplica'] as const).map((kind) => provisionWorkflow(k, kind)),
    updateWorkflow(k), promoteWorkflow(k), deleteWorkflow(k), ...powerWorkflows(k),
  ];
  for (const wf of all) runner.register(settling(k, wf));
}
