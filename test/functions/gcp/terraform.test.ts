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
    expect(entryPoints.sort()).toEqual([
      'rekeyApprovals',
      'rekeyCompromise',
      'rekeyCosts',
      'rekeyCycle',
      'rekeyKeyEvents',
      'rekeyRewrap',
    ]);
    for (const e of entryPoints) expect(typeof bundle[e]).toBe('function');
    const fn = one(res.google_cloudfunctions2_function.fn);
    expect(fn.for_each).toBe(tf$('local.functions'));
    expect(one(fn.build_config)).toMatchObject({
      runtime: 'nodejs20',
      entry_point: tf$('each.value.entry_point'),
    });
    const svc = one(fn.service_config);
    // Internal only, but for the approvals API (its ingress is a documented choice).
    expect(svc.ingress_settings).toBe(
      tf$('each.key == "approvals" ? var.approvals_ingress : "ALLOW_INTERNAL_ONLY"'),
    );
    expect(tf.variable.approvals_ingress[0].default).toBe('ALLOW_ALL');
    expect(svc.timeout_seconds).toBeLessThanOrEqual(540);
    expect(tf.variable.source_dir[0].default).toBe('../../dist/gcp');
  });

  it('gives every function its own service account', () => {
    expect(one(res.google_service_account.fn).for_each).toBe(tf$('local.functions'));
    const svc = one(one(res.google_cloudfunctions2_function.fn).service_config);
    expect(svc.service_account_email).toBe(tf$('google_service_account.fn[each.key].email'));
    // Triggers invoke with a separate identity that can only invoke.
    expect(res.google_service_account.invoker).toBeDefined();
    const invoker = one(res.google_cloud_run_service_iam_member.invoker);
    expect(invoker.role).toBe('roles/run.invoker');
    expect(invoker.for_each).toBe(tf$('{ for k, v in local.functions : k => v if k != "approvals" }'));
    // The approvals API: invokers are a variable (allUsers by default: rekey checks the JWT).
    const approvals = one(res.google_cloud_run_service_iam_member.approvals);
    expect(approvals).toMatchObject({
      for_each: tf$('toset(var.approvals_invokers)'),
      service: tf$('google_cloudfunctions2_function.fn["approvals"].service_config[0].service'),
      role: 'roles/run.invoker',
    });
    expect(tf.variable.approvals_invokers[0].default).toEqual(['allUsers']);
  });

  it('runs the cycle and the cost report from Cloud Scheduler through their topics, without retries', () => {
    const job = one(res.google_cloud_scheduler_job.cycle);
    expect(one(job.pubsub_target).topic_name).toBe(tf$('google_pubsub_topic.cycle.id'));
    const costs = one(res.google_cloud_scheduler_job.costs);
    expect(one(costs.pubsub_target).topic_name).toBe(tf$('google_pubsub_topic.costs.id'));
    expect(costs.schedule).toBe(tf$('var.cost_schedule'));
    expect(locals.scheduled).toEqual({
      cycle: tf$('google_pubsub_topic.cycle.id'),
      costs: tf$('google_pubsub_topic.costs.id'),
    });
    const trig = one(one(res.google_cloudfunctions2_function.fn).dynamic.event_trigger);
    expect(trig.for_each).toBe(
      tf$('contains(keys(local.scheduled), each.key) ? [local.scheduled[each.key]] : []'),
    );
    expect(one(trig.content)).toMatchObject({
      event_type: 'google.cloud.pubsub.topic.v1.messagePublished',
      pubsub_topic: tf$('event_trigger.value'),
      retry_policy: 'RETRY_POLICY_DO_NOT_RETRY',
    });
  });

  it('has the cycle, re-wrap, dead-letter and events topics; shards are pushed with backoff and dead-lettered', () => {
    expect(Object.keys(res.google_pubsub_topic).sort()).toEqual([
      'costs',
      'cycle',
      'events',
      'incidents',
      'incidents_dead',
      'rewrap',
      'rewrap_dead',
    ]);
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
    expect(one(res.google_pubsub_topic_iam_member.dead_letter_publisher)).toMatchObject({
      for_each: tf$('local.dead_lettered'),
      member: tf$('local.pubsub_agent'),
    });
    expect(one(res.google_pubsub_subscription_iam_member.dead_letter_subscriber)).toMatchObject({
      for_each: tf$('local.dead_lettered'),
      member: tf$('local.pubsub_agent'),
    });
    const deadLettered = Object.assign({}, ...tf.locals.filter((l: Json) => l.dead_lettered)).dead_lettered;
    expect(deadLettered).toEqual({
      rewrap: {
        subscription: tf$('google_pubsub_subscription.rewrap_push.id'),
        topic: tf$('google_pubsub_topic.rewrap_dead.id'),
      },
      incidents: {
        subscription: tf$('google_pubsub_subscription.incidents_push.id'),
        topic: tf$('google_pubsub_topic.incidents_dead.id'),
      },
    });
  });

  it('pushes key.compromised events to the compromise function with retries and dead letters; only listed members publish', () => {
    const push = one(res.google_pubsub_subscription.incidents_push);
    expect(push.topic).toBe(tf$('google_pubsub_topic.incidents.id'));
    const pc = one(push.push_config);
    expect(pc.push_endpoint).toBe(
      `${tf$('google_cloudfunctions2_function.fn["compromise"].service_config[0].uri')}/${tf$('google_pubsub_topic.incidents.id')}`,
    );
    expect(one(pc.oidc_token).service_account_email).toBe(tf$('google_service_account.invoker.email'));
    expect(one(push.dead_letter_policy)).toEqual({
      dead_letter_topic: tf$('google_pubsub_topic.incidents_dead.id'),
      max_delivery_attempts: tf$('var.compromise_max_delivery_attempts'),
    });
    expect(one(res.google_pubsub_subscription.incidents_dead_hold).topic).toBe(
      tf$('google_pubsub_topic.incidents_dead.id'),
    );
    expect(one(res.google_pubsub_topic_iam_member.incident_publishers)).toMatchObject({
      for_each: tf$('toset(var.incident_publishers)'),
      topic: tf$('google_pubsub_topic.incidents.id'),
      role: 'roles/pubsub.publisher',
    });
    // Functions that publish rekey's events; the approvals API and the cost report do not.
    expect(one(res.google_pubsub_topic_iam_member.events_publisher).for_each).toBe(
      tf$('local.event_publishers'),
    );
    expect(locals.event_publishers).toBe(tf$('toset(["cycle", "rewrap", "key_events", "compromise"])'));
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
    // The compromise response rotates, disables (and after approvals destroys) and re-wraps.
    expect(locals.kms_roles.compromise).toEqual([
      tf$('google_project_iam_custom_role.key_lifecycle.id'),
      'roles/cloudkms.cryptoKeyEncrypterDecrypter',
    ]);
    expect(locals.kms_roles.costs).toEqual(['roles/cloudkms.viewer']);
    // The approvals API holds no KMS role at all.
    expect(Object.keys(locals.kms_roles).sort()).toEqual([
      'compromise',
      'costs',
      'cycle',
      'key_events',
      'rewrap',
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

  it('keeps secrets in Secret Manager, each function getting only its own, and reaches Cloud SQL by reference', () => {
    const svc = one(one(res.google_cloudfunctions2_function.fn).service_config);
    expect(one(svc.dynamic.secret_environment_variables).for_each).toBe(
      tf$('local.function_secrets[each.key]'),
    );
    expect(locals.secret_env).toBe(tf$('merge({ REKEY_STATE_URL = var.state_url_secret }, var.secret_env)'));
    // The approvals API: the state URL and its token key; the signing key: the compromise function.
    expect(locals.function_secrets).toContain(
      'fn == "approvals" ? { REKEY_STATE_URL = var.state_url_secret } : local.secret_env',
    );
    expect(locals.governance_secrets).toEqual({
      compromise: tf$(
        'var.incident_signing_secret == null ? {} : { (var.incident_signing_secret.env) = var.incident_signing_secret.secret }',
      ),
      approvals: tf$(
        'var.approval_token_secret == null ? {} : { (var.approval_token_secret.env) = var.approval_token_secret.secret }',
      ),
    });
    expect(tf.variable.incident_signing_secret[0].type).toContain('"REKEY_INCIDENT_KEY"');
    expect(tf.variable.approval_token_secret[0].type).toContain('"REKEY_APPROVAL_TOKEN_KEY"');
    expect(one(res.google_secret_manager_secret_iam_member.fn).for_each).toBe(tf$('local.secret_grants'));
    expect(JSON.stringify(svc.environment_variables)).not.toMatch(/postgres:\/\//);
    expect(one(tf.data.google_sql_database_instance.state).name).toBe(tf$('var.cloudsql_instance'));
    expect(one(res.google_secret_manager_secret_iam_member.fn).role).toBe(
      'roles/secretmanager.secretAccessor',
    );
  });

  it('counts and sums the cost metrics the cost report writes, labelled without the key', () => {
    const metrics = Object.values(locals.cost_metrics).map((m: Json) => m.metric);
    expect(metrics).toEqual(
      expect.arrayContaining(['rekey.cost.monthly', 'rekey.key.billable_versions', 'rekey.cost.findings']),
    );
    const m = one(res.google_logging_metric.cost);
    expect(m.for_each).toBe(tf$('local.cost_metrics'));
    expect(Object.keys(m.label_extractors).sort()).toEqual(['policy', 'protection', 'provider']);
    expect(JSON.stringify(m)).not.toMatch(/keyRef/);
  });
});
