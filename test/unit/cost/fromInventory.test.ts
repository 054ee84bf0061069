import { describe, expect, it } from 'vitest';
import { costKeyFromManaged } from '../../../shared/core/cost/fromInventory.js';
import { computeCosts } from '../../../shared/core/cost/model.js';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { catalog } from './helpers.js';

const managed = (
  ref: string,
  providerType: ManagedKey['providerType'],
  versions: ManagedKey['versions'],
): ManagedKey => ({
  ref,
  providerType,
  providerId: 'p',
  name: 'k',
  tags: {},
  protection: 'hsm',
  algorithm: 'AES_256',
  enabled: true,
  primaryVersion: versions[versions.length - 1]!.id,
  versions,
  createdAt: versions[0]!.createdAt,
});

describe('costKeyFromManaged', () => {
  it('takes account and region from the ref and maps version states onto billing', () => {
    const k = costKeyFromManaged(
      managed('gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/k', 'gcp-kms', [
        { id: '1', state: 'destroyed', createdAt: '2026-01-01T00:00:00.000Z' },
        {
          id: '2',
          state: 'destroy_scheduled',
          createdAt: '2026-02-01T00:00:00.000Z',
          destroyAt: '2026-11-16T00:00:00.000Z',
        },
        { id: '3', state: 'disabled', createdAt: '2026-03-01T00:00:00.000Z' },
        { id: '4', state: 'enabled', createdAt: '2026-04-01T00:00:00.000Z' },
      ]),
    );
    expect(k).toMatchObject({ provider: 'gcp-kms', account: 'acme-prod', region: 'europe-west1' });
    // v1 free; v2 until Nov 16 (360 h); v3 disabled still bills; v4: (360 + 720 + 720) / 720 x $1.
    expect(computeCosts({ keys: [k] }, [], catalog(), '2026-11').keys[0]!.total).toBeCloseTo(2.5, 12);
  });

  it('maps Managed HSM refs to their own provider and AWS refs to account and region', () => {
    const v = [{ id: '1', state: 'enabled' as const, createdAt: '2026-01-01T00:00:00.000Z' }];
    expect(
      costKeyFromManaged(managed('azure-kv://corp.managedhsm.azure.net/keys/k', 'azure-kv', v)).provider,
    ).toBe('azure-managed-hsm');
    const aws = costKeyFromManaged(
      managed(
        'aws-kms://arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
        'aws-kms',
        v,
      ),
      { accountName: 'prod' },
    );
    expect(aws).toMatchObject({ account: '123456789012', region: 'eu-west-1', accountName: 'prod' });
  });
});
