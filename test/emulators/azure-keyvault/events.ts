import { randomUUID } from 'node:crypto';

export type KeyVaultEventType =
  | 'Microsoft.KeyVault.KeyNewVersionCreated'
  | 'Microsoft.KeyVault.KeyNearExpiry'
  | 'Microsoft.KeyVault.KeyExpired';

/** An Event Grid event (Event Grid schema) as Key Vault publishes it for keys. */
export interface EventGridEvent {
  id: string;
  topic: string;
  subject: string;
  eventType: KeyVaultEventType;
  eventTime: string;
  data: {
    Id: string;
    VaultName: string;
    ObjectType: 'Key';
    ObjectName: string;
    Version: string;
    NBF: number | null;
    EXP: number | null;
  };
  dataVersion: string;
  metadataVersion: string;
}

/** In-process Event Grid topic: keeps every event and hands each to the subscribers. */
export class EventSink {
  readonly events: EventGridEvent[] = [];
  private readonly subscribers: ((e: EventGridEvent) => void)[] = [];

  subscribe(fn: (e: EventGridEvent) => void): () => void {
    this.subscribers.push(fn);
    return () => {
      const i = this.subscribers.indexOf(fn);
      if (i !== -1) this.subscribers.splice(i, 1);
    };
  }

  publish(e: EventGridEvent): void {
    this.events.push(e);
    for (const fn of this.subscribers) fn(e);
  }

  ofType(type: KeyVaultEventType): EventGridEvent[] {
    return this.events.filter((e) => e.eventType === type);
  }

  clear(): void {
    this.events.length = 0;
  }
}

export function keyEvent(args: {
  type: KeyVaultEventType;
  subscriptionId: string;
  resourceGroup: string;
  vaultName: string;
  vaultHost: string;
  keyName: string;
  version: string;
  nbf?: number;
  exp?: number;
  at: Date;
}): EventGridEvent {
  return {
    id: randomUUID(),
    topic: `/subscriptions/${args.subscriptionId}/resourceGroups/${args.resourceGroup}/providers/Microsoft.KeyVault/vaults/${args.vaultName}`,
    subject: args.keyName,
    eventType: args.type,
    eventTime: args.at.toISOString(),
    data: {
      Id: `https://${args.vaultHost}/keys/${args.keyName}/${args.version}`,
      VaultName: args.vaultName,
      ObjectType: 'Key',
      ObjectName: args.keyName,
      Version: args.version,
      NBF: args.nbf ?? null,
      EXP: args.exp ?? null,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}
