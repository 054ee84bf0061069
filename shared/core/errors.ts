/**
 * One error root for the core. Adapters translate their own failures (SDK errors, SQLite
 * errors, PKCS#11 return codes) into these at their boundary, so nothing above a port ever
 * sees a vendor error type.
 */
export class RekeyError extends Error {
  /** Stable machine-readable code; the CLI maps it to an exit status. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Input that does not parse or does not validate (key refs, durations, CLI arguments). */
export class ValidationError extends RekeyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VALIDATION', message, options);
  }
}

/** One located problem in a policy file. */
export interface PolicyIssue {
  file: string;
  line: number;
  column: number;
  /** Dotted/indexed path of the field, e.g. `policies[0].rotate.every`. */
  path: string;
  message: string;
}

export class PolicyError extends RekeyError {
  readonly issues: PolicyIssue[];
  constructor(issues: PolicyIssue[]) {
    super('POLICY_INVALID', issues.map(formatPolicyIssue).join('\n'));
    this.issues = issues;
  }
}

export function formatPolicyIssue(i: PolicyIssue): string {
  const where = i.path ? ` ${i.path}:` : '';
  return `${i.file}:${i.line}:${i.column}:${where} ${i.message}`;
}

export class NotFoundError extends RekeyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_FOUND', message, options);
  }
}

/** A lifecycle rule would be broken (primary disabled, referenced version retired...). */
export class InvariantViolation extends RekeyError {
  constructor(message: string) {
    super('INVARIANT', message);
  }
}

/** A conditional write lost a race (CAS mismatch, lease held by someone else). */
export class ConflictError extends RekeyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFLICT', message, options);
  }
}

/** Integrity failure: a tampered audit chain, a ciphertext that does not authenticate. */
export class IntegrityError extends RekeyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INTEGRITY', message, options);
  }
}

/**
 * Every provider failure, whatever the provider. `retryable` drives backoff: throttling and
 * transient faults are retryable, permission and state errors are not.
 */
export class ProviderError extends RekeyError {
  readonly provider: string;
  readonly providerCode: string;
  readonly retryable: boolean;
  readonly throttled: boolean;
  constructor(
    provider: string,
    providerCode: string,
    message: string,
    opts: { retryable?: boolean; throttled?: boolean; cause?: unknown } = {},
  ) {
    super('PROVIDER', `${provider}: ${message}`, { cause: opts.cause });
    this.provider = provider;
    this.providerCode = providerCode;
    this.retryable = opts.retryable ?? false;
    this.throttled = opts.throttled ?? false;
  }
}

/** Configuration that is syntactically fine but cannot be used (missing env var, bad path). */
export class ConfigError extends RekeyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, options);
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
