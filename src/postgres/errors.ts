/** Failures of PostgreSQL's tools and of the instance around them, with a code callers can branch on. */
export class PostgresError extends Error {
  constructor(message: string, readonly code: 'PrerequisiteMissing' | 'Invalid' | 'Locked' | 'StartFailed' | 'Failed') {
    super(message);
  }
}
