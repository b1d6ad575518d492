/**
 * One source of truth for the errors the API exposes. Each carries the HTTP status it maps to and
 * whether its message may reach the client (`expose`), as middy's http-errors do: client errors are
 * exposed, anything else becomes a plain 500 without detail.
 */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly expose: boolean;
  constructor(statusCode: number, message: string, options?: { cause?: unknown; expose?: boolean }) {
    super(message, options);
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.expose = options?.expose ?? (statusCode < 500 || statusCode === 503);
  }
}

export class BadRequestError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(400, message, options);
    this.name = 'BadRequestError';
  }
}

export class NotFoundError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(404, message, options);
    this.name = 'NotFoundError';
  }
}

export class ConflictError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(409, message, options);
    this.name = 'ConflictError';
  }
}

export class PayloadTooLargeError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(413, message, options);
    this.name = 'PayloadTooLargeError';
  }
}

export class UnsupportedMediaTypeError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(415, message, options);
    this.name = 'UnsupportedMediaTypeError';
  }
}

export class NotReadyError extends HttpError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(503, message, options);
    this.name = 'NotReadyError';
  }
}

/**
 * onnxruntime failed on a request that passed validation: the server's fault (500), reported with
 * the runtime's message cleaned of its source paths (runtimeMessage), so the caller knows it was not
 * their input.
 */
export class InferenceRuntimeError extends HttpError {
  readonly model: string;
  readonly version: string;
  constructor(model: string, version: string, message: string, options?: { cause?: unknown }) {
    super(500, message, { ...options, expose: true });
    this.name = 'InferenceRuntimeError';
    this.model = model;
    this.version = version;
  }
}

/** A stored model whose bytes do not match its manifest: never served. */
export class IntegrityError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IntegrityError';
  }
}

/** Invalid configuration: fail fast at init rather than at the first request. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
