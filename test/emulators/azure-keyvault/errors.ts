/** A Key Vault error as the service returns it: an HTTP status and `{error: {code, message}}`. */
export class KvError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export const badParameter = (message: string) => new KvError(400, 'BadParameter', message);
export const keyNotFound = (name: string, version?: string) =>
  new KvError(
    404,
    'KeyNotFound',
    version
      ? `A key with (name/id) ${name}/${version} was not found in this key vault.`
      : `A key with (name/id) ${name} was not found in this key vault.`,
  );
export const forbidden = (message: string) => new KvError(403, 'Forbidden', message);
