import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';

/** The token the emulator accepts unless it is started with other tokens. */
export const EMULATOR_TOKEN = 'rekey-emulator-token';

/**
 * A TokenCredential that hands out a fixed bearer token and records what it was asked for,
 * so tests can see the scope the SDK derived from the emulator's challenge.
 */
export class StaticTokenCredential implements TokenCredential {
  readonly requests: { scopes: string[]; tenantId?: string }[] = [];
  constructor(private readonly token: string = EMULATOR_TOKEN) {}

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
    this.requests.push({
      scopes: Array.isArray(scopes) ? [...scopes] : [scopes],
      ...(options?.tenantId ? { tenantId: options.tenantId } : {}),
    });
    return { token: this.token, expiresOnTimestamp: Date.now() + 3_600_000 };
  }
}
