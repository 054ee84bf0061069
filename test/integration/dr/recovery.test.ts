import { CreateAliasCommand, CreateKeyCommand, ReplicateKeyCommand } from '@aws-sdk/client-kms';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { evaluateDr } from '../../../shared/core/dr/check.js';
import { AwsKmsProvider } from '../../../shared/providers/aws/AwsKmsProvider.js';
import { GcpKmsProvider } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import * as aws from '../aws/helpers.js';
import * as azure from '../azure/helpers.js';
import * as gcp from '../gcp/helpers.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('recovery facts from each cloud, through its official client and emulator', () => {
  it('AWS: a single-Region key has no copy; a multi-Region key says so', async () => {
    const emu = await aws.emulator();
    cleanup.push(() => emu.close());
    const p = new AwsKmsProvider({
      id: 'aws',
      regions: [aws.REGION],
      endpoint: emu.endpoint,
      credentials: aws.CREDENTIALS,
      maxAttempts: 1,
    });
    cleanup.push(() => p.close?.());
    const single = await p.createKey({ name: 'dr-single' });
    const info = await p.recovery(parseKeyRef(single.ref));
    expect(info).toMatchObject({ locations: [aws.REGION], copies: [] });
    expect(info.deletionProtection).toContain('7-30 days');

    const kms = aws.kmsClient(emu);
    const made = await kms.send(new CreateKeyCommand({ MultiRegion: true }));
    await kms.send(
      new CreateAliasCommand({ AliasName: 'alias/dr-multi', TargetKeyId: made.KeyMetadata!.KeyId! }),
    );
    const multi = await p.recovery(parseKeyRef(`aws-kms://${made.KeyMetadata!.Arn}`));
    expect(multi.copies).toEqual([]);
    expect(multi.notes.join(' ')).toContain('without replicas');

    // A replica in another Region is a copy, seen from either side.
    const rep = await kms.send(
      new ReplicateKeyCommand({ KeyId: made.KeyMetadata!.KeyId!, ReplicaRegion: 'us-east-1' }),
    );
    expect(rep.ReplicaKeyMetadata?.MultiRegionConfiguration?.MultiRegionKeyType).toBe('REPLICA');
    const replicated = await p.recovery(parseKeyRef(`aws-kms://${made.KeyMetadata!.Arn}`));
    expect(replicated.copies).toEqual([expect.objectContaining({ kind: 'replica', location: 'us-east-1' })]);
    const east = new AwsKmsProvider({
      id: 'aws-east',
      regions: ['us-east-1'],
      endpoint: emu.endpoint,
      credentials: aws.CREDENTIALS,
      maxAttempts: 1,
    });
    cleanup.push(() => east.close?.());
    const fromReplica = await east.recovery(parseKeyRef(`aws-kms://${rep.ReplicaKeyMetadata!.Arn}`));
    expect(fromReplica.copies).toEqual([
      expect.objectContaining({ kind: 'replica', location: aws.REGION, detail: 'multi-Region primary key' }),
    ]);
    // Only a multi-Region primary can be replicated, once per Region.
    const again = await aws.rejectionOf(
      kms.send(new ReplicateKeyCommand({ KeyId: made.KeyMetadata!.KeyId!, ReplicaRegion: 'us-east-1' })),
    );
    expect(again.name).toBe('AlreadyExistsException');
    const plain = await aws.rejectionOf(
      kms.send(new ReplicateKeyCommand({ KeyId: single.ref.split('/').pop()!, ReplicaRegion: 'us-east-1' })),
    );
    expect(plain.name).toBe('UnsupportedOperationException');
  });

  it('GCP: a regional key ring has no copy, a multi-regional location is one', async () => {
    const emu = await gcp.emulator();
    cleanup.push(() => emu.close());
    const make = (location: string) => {
      const p = new GcpKmsProvider({
        id: 'gcp',
        projects: [gcp.PROJECT],
        locations: [location],
        keyRings: ['dr'],
        apiEndpoint: emu.endpoint.host,
        port: emu.endpoint.port,
        insecure: true,
        libraryRetries: false,
        clock: emu.clock,
      });
      cleanup.push(() => p.close());
      return p;
    };
    const regional = make('europe-west1');
    const r = await regional.recovery(parseKeyRef((await regional.createKey({ name: 'dr-r' })).ref));
    expect(r).toMatchObject({ locations: ['europe-west1'], copies: [] });
    expect(r.deletionProtection).toContain('DESTROY_SCHEDULED');
    const multi = make('europe');
    const m = await multi.recovery(parseKeyRef((await multi.createKey({ name: 'dr-m' })).ref));
    expect(m.copies).toEqual([
      expect.objectContaining({ kind: 'multi-region-location', location: 'europe' }),
    ]);
  });

  it('Azure: a vault key is replicated to the paired region and soft-deletable', async () => {
    const emu = await azure.emulator();
    cleanup.push(() => emu.close());
    cleanup.push(() => azure.certificates().cleanup());
    const p = azure.provider(emu);
    cleanup.push(() => p.close?.());
    const k = await p.createKey({ name: `dr-${Date.now()}` });
    const info = await p.recovery(parseKeyRef(k.ref));
    expect(info.locations).toEqual([azure.VAULT]);
    expect(info.copies).toEqual([expect.objectContaining({ kind: 'paired-region' })]);
    expect(info.deletionProtection).toMatch(/soft delete/);
  });
});

describe('evaluateDr', () => {
  const key = (ref: string) => ({
    ref,
    providerType: 'aws-kms' as const,
    providerId: 'aws',
    name: ref,
    tags: {},
    protection: 'hsm' as const,
    algorithm: 'AES_256' as const,
    enabled: true,
    primaryVersion: '1',
    versions: [{ id: '1', state: 'enabled' as const, createdAt: '2026-01-01T00:00:00.000Z' }],
    createdAt: '2026-01-01T00:00:00.000Z',
  });
  it('a replica in the DEKs region covers them; a single-Region key elsewhere is critical', () => {
    const report = evaluateDr({
      keys: [key('a'), key('b'), key('c')],
      recovery: new Map([
        [
          'a',
          {
            locations: ['us-east-1'],
            copies: [{ kind: 'replica', location: 'eu-west-1', detail: '' }],
            deletionProtection: 'x',
            notes: [],
          },
        ],
        ['b', { locations: ['us-east-1'], copies: [], deletionProtection: 'x', notes: [] }],
        ['c', { error: 'AccessDenied' }],
      ]),
      census: new Map([
        ['a', { orders: { '1': 10 } }],
        ['b', { orders: { '1': 5 } }],
      ]),
      storeLocations: { orders: 'eu-west-1' },
      now: new Date('2026-11-01T00:00:00Z'),
    });
    expect(report.keys.map((k) => k.status)).toEqual(['recoverable', 'single-location', 'unknown']);
    const critical = report.findings.filter((f) => f.severity === 'critical');
    expect(critical).toEqual([
      expect.objectContaining({ keyRef: 'b', store: 'orders', rule: 'dek_location_without_key_copy' }),
    ]);
    expect(report.findings.find((f) => f.keyRef === 'c')?.message).toContain('AccessDenied');
    expect(report.summary).toMatchObject({ recoverable: 1, 'single-location': 1, unknown: 1, critical: 1 });
  });
});
