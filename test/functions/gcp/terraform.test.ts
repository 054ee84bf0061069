/**
 * infra/gcp/main.tf, parsed with hcl2json: the functions match the bundle's targets, the
 * scheduler feeds the cycle topic, shards go through a push subscription with retries and a
 * dead-letter topic, KMS audit logs reach the key-events function, and every function runs as
 * its own service account with least-privilege roles (no primitive roles, no cloudkms.admin).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from '@cdktf/hcl2json';
import { beforeAll, describe, expect, it } from 'vitest';
import { KMS_KEY_METHODS } from '../../../shared/providers/gcp/auditEvents.js';
import { BUNDLE, ROOT, requireBundle } from './harness.js';

// biome-ignore lint/suspicious/noExplicitAny: hcl2json returns untyped JSON
type Json = any;
let tf: Json;
let res: Json;
let locals: Json;

/** Every string in the document, for rules that hold everywhere. */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) for (const x of v) strings(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) strings(x, out);
  return out;
}
const one = (r: Json) => r[0];
/** A Terraform expression as hcl2json writes it: `${expr}`. */
const tf$ = (expr: string) => `\${${expr}}`;

beforeAll(async () => {
  tf = await parse('main.tf', readFileSync(join(ROOT, 'infra', 'gcp', 'main.tf'), 'utf8'));
  res = tf.resource;
  locals = Object.assign({}, ...tf.locals);
});

describe('infra/gcp/main.tf', () => {
  it('deploys one 2nd-gen function per target the bundle registers', async () => {
    requireBundle();
    const bundle = await import(pathToFileURL(join(BUNDLE, 'index.js')).href);
    const entryPoints = Object.values(locals.functions).map((f: Json) => f.entry_point);
    expect(entryPoints.sort()).toEqual(['rekeyCycle', 'rekeyKeyEvents', 'rekeyRewrap']);
    for (const e of entryPoints) expect(typeof bundle[e]).toBe('function');
    const fn = one(res.google_cloudfunctions2_function.fn);
    expect(fn.for_each).toBe(tf$('local.functions'));
    expect(one(fn.build_config)).toMatchObject({
      runtime: 'nodejs20',
      entry_point: tf$('each.value.entry_point'),
    });
    const svc = one(fn.service_config);
    expect(svc.ingress_settings).toBe('ALLOW_INTERNAL_ONLY');
    expect(svc.timeout_seconds).toBeLessThanOrEqual(540);
    expect(tf.variable.source_dir[0].default).toBe('../../dist/gcp');
  });

  it('gives every function its own service account', () => {
    expect(one(res.google_service_account.fn).for_each).toBe(tf$('local.functions'));
    const svc = one(one(res.google_cloudfunctions2_function.fn).service_config);
    expect(svc.service_account_email).toBe(tf$('google_service_account.fn[each.key].email'));
    // Triggers invoke with a separate identity that can only invoke.
    expect(res.google_service_account.invoker).toBeDefined();
    expect(one(res.google_cloud_run_service_iam_member.invoker).role).toBe('roles/run.invoker');
  });

  it('runs the cycle from Cloud Scheduler through the cycle topic, without retries', () => {
    const job = one(res.google_cloud_scheduler_job.cycle);
    expect(one(job.pubsub_target).topic_name).toBe(tf$('google_pubsub_topic.cycle.id'));
    const trig = one(one(res.google_cloudfunctions2_function.fn).dynamic.event_trigger);
    expect(trig.for_each).toBe(tf$('each.key == "cycle" ? [1] : []'));
    expect(one(trig.content)).toMatchObject({
      event_type: 'google.cloud.pubsub.topic.v1.messagePublished',
      pubsub_topic: tf$('google_pubsub_topic.cycle.id'),
      retry_policy: 'RETRY_POLICY_DO_NOT_RETRY',
    });
  });

  it('has the cycle, re-wrap, dead-letter and events topics; shards are pushed with backoff and dead-lettered', () => {
    expect(Object.keys(res.google_pubsub_topic).sort()).toEqual(['cycle', 'events', 'rewrap', 'rewrap_dead']);
    const push = one(res.google_pubsub_subscription.rewrap_push);
    expect(push.topic).toBe(tf$('google_pubsub_topic.rewrap.id'));
    expect(one(push.dead_letter_policy).dead_letter_topic).toBe(tf$('google_pubsub_topic.rewrap_dead.id'));
    expect(one(push.retry_policy)).toEqual({ minimum_backoff: '10s', maximum_backoff: '600s' });
    const pc = one(push.push_config);
    expect(pc.push_endpoint).toBe(
      `${tf$('google_cloudfunctions2_function.fn["rewrap"].service_config[0].uri')}/${tf$('google_pubsub_topic.rewrap.id')}`,
    );
    expect(one(pc.oidc_token).service_account_email).toBe(tf$('google_service_account.invoker.email'));
    // Dead letters are kept, and Pub/Sub may move them.
    expect(one(res.google_pubsub_subscription.rewrap_dead_hold).topic).toBe(
      tf$('google_pubsub_topic.rewrap_dead.id'),
    );
    expect(one(res.google_pubsub_topic_iam_member.dead_letter_publisher).member).toBe(
      tf$('local.pubsub_agent'),
    );
    expect(one(res.google_pubsub_subscription_iam_member.dead_letter_subscriber).member).toBe(
      tf$('local.pubsub_agent'),
    );
  });

  it('sends Cloud KMS audit-log entries for exactly the methods the parser acts on to the key-events function', () => {
    expect(tf.variable.kms_audit_methods[0].default.sort()).toEqual(Object.keys(KMS_KEY_METHODS).sort());
    const trig = one(res.google_eventarc_trigger.kms_audit);
    expect(trig.for_each).toBe(tf$('toset(var.kms_audit_methods)'));
    expect(trig.matching_criteria).toEqual([
      { attribute: 'type', value: 'google.cloud.audit.log.v1.written' },
      { attribute: 'serviceName', value: 'cloudkms.googleapis.com' },
      { attribute: 'methodName', value: tf$('each.value') },
    ]);
    expect(one(one(trig.destination).cloud_run_service).service).toBe(
      tf$('google_cloudfunctions2_function.fn["key_events"].service_config[0].service'),
    );
  });

  it('grants no primitive role and no cloudkms.admin; the worker may only encrypt, decrypt and read', () => {
    const all = strings(tf);
    expect(all.filter((s) => /(^|[^.\w])roles\/(owner|editor|viewer)\b/.test(s))).toEqual([]);
    expect(all.filter((s) => s.includes('cloudkms.admin'))).toEqual([]);
    expect(locals.kms_roles.rewrap.sort()).toEqual([
      'roles/cloudkms.cryptoKeyEncrypterDecrypter',
      'roles/cloudkms.viewer',
    ]);
    expect(locals.kms_roles.key_events.sort()).toEqual([
      'roles/cloudkms.cryptoKeyEncrypterDecrypter',
      'roles/cloudkms.viewer',
    ]);
    // The cycle manages versions but cannot use keys, nor change who may.
    expect(locals.kms_roles.cycle).toEqual([tf$('google_project_iam_custom_role.key_lifecycle.id')]);
    const perms: string[] = one(res.google_project_iam_custom_role.key_lifecycle).permissions;
    expect(perms.filter((p) => /useTo|setIamPolicy|\.delete$/.test(p))).toEqual([]);
    expect(perms).toContain('cloudkms.cryptoKeyVersions.create');
    // KMS roles are granted on the managed key rings, never project-wide.
    expect(one(res.google_kms_key_ring_iam_member.fn).key_ring_id).toBe(tf$('each.value.ring'));
    const projectRoles = Object.values(res.google_project_iam_member).map((r: Json) => one(r).role);
    expect(projectRoles.sort()).toEqual(['roles/cloudsql.client', 'roles/eventarc.eventReceiver']);
  });

  it('keeps secrets in Secret Manager and reaches Cloud SQL by reference', () => {
    const svc = one(one(res.google_cloudfunctions2_function.fn).service_config);
    expect(one(svc.dynamic.secret_environment_variables).for_each).toBe(tf$('local.secret_env'));
    expect(locals.secret_env).toBe(tf$('merge({ REKEY_STATE_URL = var.state_url_secret }, var.secret_env)'));
    expect(JSON.stringify(svc.environment_variables)).not.toMatch(/postgres:\/\//);
    expect(one(tf.data.google_sql_database_instance.state).name).toBe(tf$('var.cloudsql_instance'));
    expect(one(res.google_secret_manager_secret_iam_member.fn).role).toBe(
      'roles/secretmanager.secretAccessor',
    );
  });
});
