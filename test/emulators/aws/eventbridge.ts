import { randomUUID } from 'node:crypto';
import type { SimClock } from './clock.js';
import { AwsError, validationError } from './protocol.js';

/** An event as EventBridge would deliver it to a rule target. */
export interface RecordedEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: unknown;
  eventBusName: string;
}

/** EventBridge PutEvents only: entries are validated, recorded and inspectable. */
export class EventBridgeService {
  private readonly recorded: RecordedEvent[] = [];
  private entryFailures: Array<{ code: string; remaining: number }> = [];

  constructor(
    private readonly account: string,
    private readonly clock: SimClock,
  ) {}

  reset(): void {
    this.recorded.length = 0;
    this.entryFailures = [];
  }

  /** What was put so far, oldest first, optionally filtered. */
  events(filter: { source?: string; detailType?: string; eventBusName?: string } = {}): RecordedEvent[] {
    return this.recorded.filter(
      (e) =>
        (filter.source === undefined || e.source === filter.source) &&
        (filter.detailType === undefined || e['detail-type'] === filter.detailType) &&
        (filter.eventBusName === undefined || e.eventBusName === filter.eventBusName),
    );
  }

  /** Makes the next `count` otherwise valid entries fail individually (partial failure). */
  failEntries(count: number, code = 'InternalFailure'): void {
    this.entryFailures.push({ code, remaining: count });
  }

  handle(op: string, region: string, body: Record<string, unknown>): unknown {
    if (op !== 'PutEvents') {
      throw new AwsError('UnknownOperationException', `The emulator does not implement AWSEvents.${op}`);
    }
    const entries = body.Entries;
    if (!Array.isArray(entries)) {
      throw validationError(
        "1 validation error detected: Value null at 'entries' failed to satisfy constraint: Member must not be null",
      );
    }
    if (entries.length < 1 || entries.length > 10) {
      throw validationError(
        `1 validation error detected: Value '[...]' at 'entries' failed to satisfy constraint: Member must have length between 1 and 10`,
      );
    }
    let failed = 0;
    const out = entries.map((raw) => {
      const r = this.entry(region, raw as Record<string, unknown>);
      if ('ErrorCode' in r) failed++;
      return r;
    });
    return { FailedEntryCount: failed, Entries: out };
  }

  private entry(region: string, e: Record<string, unknown>): Record<string, string> {
    const bad = (code: string, message: string) => ({ ErrorCode: code, ErrorMessage: message });
    if (typeof e.Source !== 'string' || e.Source.length === 0)
      return bad('InvalidArgument', 'Parameter Source is not valid.');
    if (typeof e.DetailType !== 'string' || e.DetailType.length === 0) {
      return bad('InvalidArgument', 'Parameter DetailType is not valid.');
    }
    if (typeof e.Detail !== 'string') return bad('InvalidArgument', 'Parameter Detail is not valid.');
    if (e.Source.startsWith('aws.'))
      return bad('NotAuthorizedForSourceException', 'Not authorized for the source.');
    let detail: unknown;
    try {
      detail = JSON.parse(e.Detail);
    } catch {
      return bad('MalformedDetail', 'Detail is malformed.');
    }
    if (detail === null || typeof detail !== 'object' || Array.isArray(detail)) {
      return bad('MalformedDetail', 'Detail is malformed.');
    }
    const resources = Array.isArray(e.Resources)
      ? e.Resources.filter((x): x is string => typeof x === 'string')
      : [];
    const failure = this.entryFailures.find((f) => f.remaining > 0);
    if (failure) {
      failure.remaining--;
      this.entryFailures = this.entryFailures.filter((f) => f.remaining > 0);
      return bad(failure.code, 'injected entry failure');
    }
    const time = typeof e.Time === 'number' ? new Date(e.Time * 1000) : this.clock.now();
    const ev: RecordedEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': e.DetailType,
      source: e.Source,
      account: this.account,
      time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      region,
      resources,
      detail,
      eventBusName: typeof e.EventBusName === 'string' && e.EventBusName ? e.EventBusName : 'default',
    };
    this.recorded.push(ev);
    return { EventId: ev.id };
  }
}
