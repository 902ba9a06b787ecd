/** Failures of the encrypted volumes and of the host tools under them, with a code callers can branch on. */
export class VolumeError extends Error {
  constructor(message: string, readonly code: 'PrerequisiteMissing' | 'WrongKey' | 'Busy' | 'NotFound' | 'Invalid' | 'Locked' | 'Failed' | 'OnlineResizeUnavailable') {
    super(message);
  }
}
