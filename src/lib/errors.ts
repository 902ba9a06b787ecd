/**
 * The one error catalogue. Domain code throws `ApiError`s built here; the error-handler plugin of each
 * HTTP surface turns them into Azure's envelope `{"error":{"code","message","innererror"?}}`.
 * Codes and statuses follow Azure Key Vault / ARM so the official SDKs react as they do against Azure.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
    /** Extra response headers (e.g. the WWW-Authenticate challenge). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): { error: { code: string; message: string; innererror?: { code: string } } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.innerCode ? { innererror: { code: this.innerCode } } : {}),
      },
    };
  }
}

export const errors = {
  badParameter: (message: string, inner?: string) => new ApiError(400, 'BadParameter', message, inner),
  unauthorized: (message: string, challenge?: string) =>
    new ApiError(401, 'Unauthorized', message, undefined, challenge ? { 'www-authenticate': challenge } : {}),
  forbidden: (message: string, inner: string) => new ApiError(403, 'Forbidden', message, inner),
  authorizationFailed: (message: string) => new ApiError(403, 'AuthorizationFailed', message),
  keyNotFound: (message: string) => new ApiError(404, 'KeyNotFound', message),
  notFound: (code: string, message: string) => new ApiError(404, code, message),
  /** 421: the connection (its TLS server name) was opened for another host than the request names. */
  misdirected: (message: string) => new ApiError(421, 'MisdirectedRequest', message),
  conflict: (message: string, inner?: string) => new ApiError(409, 'Conflict', message, inner),
  tooLarge: (limit: number) =>
    new ApiError(413, 'BadParameter', `The request body is larger than the ${limit} bytes this service accepts.`, 'RequestTooLarge'),
  serviceUnavailable: (message: string) => new ApiError(503, 'ServiceUnavailable', message),
  internal: (requestId: string) =>
    new ApiError(500, 'InternalError', `The service hit an internal error. Quote request id ${requestId} to the operator.`),
  auditUnavailable: (requestId: string) =>
    new ApiError(500, 'InternalError', `The audit log could not record this request, so it was refused (request id ${requestId}).`, 'AuditFailure'),
};

/** Errors that are ours and safe to show; anything else becomes a generic 500 with a request id. */
export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError;
}
