# rekey on Google Cloud: Cloud Functions (2nd gen) for the scheduled cycle, the re-wrap worker,
# Cloud KMS audit-log events, key.compromised events, the approvals API and the cost report;
# Cloud Scheduler -> Pub/Sub; Pub/Sub topics for shards, incidents and events, with dead-letter
# topics; an Eventarc trigger per audited KMS method; one service account per function holding
# only what that function does. rekey's state lives in an existing Cloud SQL for PostgreSQL
# instance, reached over private IP through a VPC connector.
#
#   npm run build                      # dist/gcp: the bundle, package.json, rekey.yaml
#   terraform -chdir=infra/gcp init
#   terraform -chdir=infra/gcp apply -var project_id=... -var 'kms_key_rings=[...]' ...

terraform {
  required_version = ">= 1.5"
  required_providers {
    google  = { source = "hashicorp/google", version = ">= 6.0, < 8.0" }
    archive = { source = "hashicorp/archive", version = ">= 2.4" }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project the functions, topics and scheduler job live in."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler job and the Eventarc triggers."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "rekey"
}

variable "kms_key_rings" {
  description = "Key rings rekey manages, as full names: projects/<p>/locations/<l>/keyRings/<r>. Roles are granted on these rings only."
  type        = list(string)
  validation {
    condition     = alltrue([for r in var.kms_key_rings : can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+$", r))])
    error_message = "Each key ring must be projects/<p>/locations/<l>/keyRings/<r>."
  }
}

variable "kms_audit_methods" {
  description = "Cloud KMS audit-log methodName values that start a re-wrap (see: gcloud eventarc audit-logs-provider method-names list --service-name=cloudkms.googleapis.com)."
  type        = list(string)
  default     = ["CreateCryptoKeyVersion", "UpdateCryptoKeyPrimaryVersion"]
}

variable "cloudsql_instance" {
  description = "Name of the existing Cloud SQL for PostgreSQL instance holding rekey's state (and perhaps the DEK tables)."
  type        = string
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/<p>/locations/<r>/connectors/<c>) through which the functions reach Cloud SQL's private IP; null to connect without one."
  type        = string
  default     = null
}

variable "state_url_secret" {
  description = "Secret Manager secret (id in this project) whose latest version is rekey's state URL: postgres://user:password@<private-ip>:5432/<db>."
  type        = string
}

variable "secret_env" {
  description = "More environment variables from Secret Manager, e.g. the DEK stores' URLs named in rekey.yaml as env:ORDERS_DB_URL: { ORDERS_DB_URL = \"orders-db-url\" }."
  type        = map(string)
  default     = {}
}

variable "incident_signing_secret" {
  description = "Secret Manager secret (id in this project) with the HMAC key of key.compromised events, and the variable it is passed in: the secretEnv of incidents.signing.hmac in rekey.yaml. Only the compromise function gets it. Null when events are signed with JWS (public key bundled beside rekey.yaml) or not accepted."
  type = object({
    secret = string
    env    = optional(string, "REKEY_INCIDENT_KEY")
  })
  default = null
}

variable "approval_token_secret" {
  description = "Secret Manager secret with the HS256 key of approver tokens, and the variable it is passed in: the secretEnv of approvals.tokens.hmac. Only the approvals function gets it. Null when tokens are checked with a public key (approvals.tokens.jws)."
  type = object({
    secret = string
    env    = optional(string, "REKEY_APPROVAL_TOKEN_KEY")
  })
  default = null
}

variable "incident_publishers" {
  description = "IAM members allowed to publish key.compromised events to the incidents topic, e.g. [\"serviceAccount:siem@sec-prod.iam.gserviceaccount.com\"]. Events are also checked against incidents.sources and their signature."
  type        = list(string)
  default     = []
}

variable "approvals_ingress" {
  description = "Who can reach the approvals API: ALLOW_ALL (approvers' tools anywhere; every request still needs an approver JWT), ALLOW_INTERNAL_AND_GCLB (behind a load balancer, e.g. with Cloud Armor) or ALLOW_INTERNAL_ONLY (the VPC)."
  type        = string
  default     = "ALLOW_ALL"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.approvals_ingress)
    error_message = "approvals_ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "approvals_invokers" {
  description = "Members given roles/run.invoker on the approvals API. [\"allUsers\"]: Cloud Run lets every request through and rekey authenticates it with the approver JWT. Name service accounts instead to require Cloud Run IAM as well; callers then send their Google ID token in X-Serverless-Authorization, the approver JWT in Authorization."
  type        = list(string)
  default     = ["allUsers"]
}

variable "cost_schedule" {
  description = "When the cost report runs (cron, in time_zone)."
  type        = string
  default     = "0 6 * * *"
}

variable "compromise_max_delivery_attempts" {
  description = "Deliveries of a key.compromised event before it goes to the dead-letter topic (5-100). Each one resumes the same incident."
  type        = number
  default     = 20
}

variable "source_dir" {
  description = "The built bundle (npm run build)."
  type        = string
  default     = "../../dist/gcp"
}

variable "schedule" {
  description = "When the scheduled cycle runs (cron, in time_zone)."
  type        = string
  default     = "0 3 * * *"
}

variable "time_zone" {
  type    = string
  default = "Etc/UTC"
}

variable "shards" {
  description = "Shards per re-wrap job: how many workers can work on one key's DEKs at once."
  type        = number
  default     = 4
}

variable "worker_max_instances" {
  description = "Most re-wrap worker instances at once; with the policy's rate this bounds the load on KMS and the database."
  type        = number
  default     = 10
}

variable "rewrap_max_delivery_attempts" {
  description = "Deliveries of a shard before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10
}

# ---------------------------------------------------------------------------------------------
# Shared facts
# ---------------------------------------------------------------------------------------------

data "google_project" "this" {
  project_id = var.project_id
}

data "google_sql_database_instance" "state" {
  name    = var.cloudsql_instance
  project = var.project_id
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  functions = {
    cycle      = { entry_point = "rekeyCycle", description = "Scheduled cycle: inventory, plan, apply; re-wraps queued as shards", max_instances = 1 }
    rewrap     = { entry_point = "rekeyRewrap", description = "Re-wrap worker: one shard per Pub/Sub message", max_instances = var.worker_max_instances }
    key_events = { entry_point = "rekeyKeyEvents", description = "Cloud KMS audit-log events: re-wrap to a new version", max_instances = 1 }
    compromise = { entry_point = "rekeyCompromise", description = "key.compromised events: rotate, re-wrap, disable the version", max_instances = 5 }
    approvals  = { entry_point = "rekeyApprovals", description = "Approvals API (HTTP, approver JWTs)", max_instances = 5 }
    costs      = { entry_point = "rekeyCosts", description = "Cost report: per-key cost metrics of the latest inventory", max_instances = 1 }
  }
  # Functions started by Cloud Scheduler through a topic (Eventarc, no retry: the next run comes).
  scheduled = {
    cycle = google_pubsub_topic.cycle.id
    costs = google_pubsub_topic.costs.id
  }
  # Functions that publish rekey's events (KeyRotated, CompromiseContained...).
  event_publishers = toset(["cycle", "rewrap", "key_events", "compromise"])
  common_env = {
    REKEY_SHARDS = tostring(var.shards)
    NODE_OPTIONS = "--enable-source-maps"
  }
  secret_env = merge({ REKEY_STATE_URL = var.state_url_secret }, var.secret_env)
  # Secrets per function: the approvals API reads and writes rekey's state only (it composes no
  # provider and no DEK store), so it gets the state URL and its token key, nothing else; the
  # incidents' signing key goes to the compromise function alone.
  governance_secrets = {
    compromise = var.incident_signing_secret == null ? {} : { (var.incident_signing_secret.env) = var.incident_signing_secret.secret }
    approvals  = var.approval_token_secret == null ? {} : { (var.approval_token_secret.env) = var.approval_token_secret.secret }
  }
  function_secrets = {
    for fn in keys(local.functions) : fn => merge(
      fn == "approvals" ? { REKEY_STATE_URL = var.state_url_secret } : local.secret_env,
      try(local.governance_secrets[fn], {}),
    )
  }
  # Roles on the managed key rings, per function. No function gets cloudkms.admin: the cycle's
  # key lifecycle is a custom role listing exactly the calls it makes, the workers may only
  # encrypt and decrypt (and read key metadata), the compromise response needs both, the cost
  # report only reads, and the approvals API touches no key at all.
  kms_roles = {
    cycle      = [google_project_iam_custom_role.key_lifecycle.id]
    rewrap     = ["roles/cloudkms.cryptoKeyEncrypterDecrypter", "roles/cloudkms.viewer"]
    key_events = ["roles/cloudkms.cryptoKeyEncrypterDecrypter", "roles/cloudkms.viewer"]
    compromise = [google_project_iam_custom_role.key_lifecycle.id, "roles/cloudkms.cryptoKeyEncrypterDecrypter"]
    costs      = ["roles/cloudkms.viewer"]
  }
  ring_grants = merge([
    for fn, roles in local.kms_roles : {
      for pair in setproduct(roles, var.kms_key_rings) : "${fn} ${pair[0]} ${pair[1]}" => { fn = fn, role = pair[0], ring = pair[1] }
    }
  ]...)
  secret_grants = merge([
    for fn, secrets in local.function_secrets : {
      for env, secret in secrets : "${fn} ${env}" => { fn = fn, secret = secret }
    }
  ]...)
}

# ---------------------------------------------------------------------------------------------
# Identities: one service account per function, one for the triggers that invoke them
# ---------------------------------------------------------------------------------------------

resource "google_service_account" "fn" {
  for_each     = local.functions
  account_id   = replace("${var.name_prefix}-${each.key}", "_", "-")
  display_name = "rekey ${each.key} function"
  description  = each.value.description
}

resource "google_service_account" "invoker" {
  account_id   = "${var.name_prefix}-invoker"
  display_name = "rekey triggers (Eventarc, Pub/Sub push)"
  description  = "Identity Eventarc and the push subscriptions use to invoke the rekey functions"
}

resource "google_project_iam_custom_role" "key_lifecycle" {
  role_id     = replace("${var.name_prefix}_key_lifecycle", "-", "_")
  title       = "rekey key lifecycle"
  description = "Inventory, rotate, schedule native rotation, disable and schedule destruction of key versions; no cryptographic use"
  permissions = [
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeys.update",
    "cloudkms.cryptoKeyVersions.create",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.cryptoKeyVersions.update",
    "cloudkms.cryptoKeyVersions.destroy",
  ]
}

resource "google_kms_key_ring_iam_member" "fn" {
  for_each    = local.ring_grants
  key_ring_id = each.value.ring
  role        = each.value.role
  member      = google_service_account.fn[each.value.fn].member
}

resource "google_secret_manager_secret_iam_member" "fn" {
  for_each  = local.secret_grants
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.value.fn].member
}

resource "google_project_iam_member" "cloudsql_client" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/cloudsql.client"
  member   = google_service_account.fn[each.key].member
}

resource "google_project_iam_member" "invoker_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.invoker.member
}

# Triggers invoke every function but the approvals API, which people's tools call.
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = { for k, v in local.functions : k => v if k != "approvals" }
  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

# The approvals API authenticates every request itself (an approver's JWT, checked before any
# routing, failures audited), so by default Cloud Run lets requests through (allUsers).
resource "google_cloud_run_service_iam_member" "approvals" {
  for_each = toset(var.approvals_invokers)
  location = var.region
  service  = google_cloudfunctions2_function.fn["approvals"].service_config[0].service
  role     = "roles/run.invoker"
  member   = each.value
}

# Pub/Sub signs the push subscription's OIDC tokens as the invoker.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# ---------------------------------------------------------------------------------------------
# Pub/Sub: cycle ticks, re-wrap shards (with a dead-letter topic), rekey's events
# ---------------------------------------------------------------------------------------------

resource "google_pubsub_topic" "cycle" {
  name = "${var.name_prefix}-cycle"
}

resource "google_pubsub_topic" "rewrap" {
  name                       = "${var.name_prefix}-rewrap"
  message_retention_duration = "604800s"
}

resource "google_pubsub_topic" "rewrap_dead" {
  name                       = "${var.name_prefix}-rewrap-dead"
  message_retention_duration = "2678400s"
}

resource "google_pubsub_topic" "events" {
  name = "${var.name_prefix}-events"
}

resource "google_pubsub_topic" "costs" {
  name = "${var.name_prefix}-costs"
}

# key.compromised CloudEvents from detectors (structured or binary mode), and the dead letters
# of those that could not be handled.
resource "google_pubsub_topic" "incidents" {
  name                       = "${var.name_prefix}-incidents"
  message_retention_duration = "604800s"
}

resource "google_pubsub_topic" "incidents_dead" {
  name                       = "${var.name_prefix}-incidents-dead"
  message_retention_duration = "2678400s"
}

resource "google_pubsub_topic_iam_member" "incident_publishers" {
  for_each = toset(var.incident_publishers)
  topic    = google_pubsub_topic.incidents.id
  role     = "roles/pubsub.publisher"
  member   = each.value
}

# The worker's own push subscription (not an Eventarc-managed one), so that it carries the ack
# deadline, retry policy and dead-letter policy. The endpoint path names the topic: the
# Functions Framework turns the push envelope into the messagePublished CloudEvent from it.
resource "google_pubsub_subscription" "rewrap_push" {
  name                       = "${var.name_prefix}-rewrap-push"
  topic                      = google_pubsub_topic.rewrap.id
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn["rewrap"].service_config[0].uri}/${google_pubsub_topic.rewrap.id}"
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.fn["rewrap"].service_config[0].uri
    }
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.rewrap_dead.id
    max_delivery_attempts = var.rewrap_max_delivery_attempts
  }
}

# Messages published to a topic without subscriptions are lost: keep dead letters for replay.
resource "google_pubsub_subscription" "rewrap_dead_hold" {
  name                       = "${var.name_prefix}-rewrap-dead-hold"
  topic                      = google_pubsub_topic.rewrap_dead.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

# Like the shards: a push subscription of our own (retries, dead letters) to the compromise
# function. An incident still open fails the delivery, and every redelivery resumes it; an event
# already handled is answered from its record and never acts twice.
resource "google_pubsub_subscription" "incidents_push" {
  name                       = "${var.name_prefix}-incidents-push"
  topic                      = google_pubsub_topic.incidents.id
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }
  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn["compromise"].service_config[0].uri}/${google_pubsub_topic.incidents.id}"
    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.fn["compromise"].service_config[0].uri
    }
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.incidents_dead.id
    max_delivery_attempts = var.compromise_max_delivery_attempts
  }
}

resource "google_pubsub_subscription" "incidents_dead_hold" {
  name                       = "${var.name_prefix}-incidents-dead-hold"
  topic                      = google_pubsub_topic.incidents_dead.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

locals {
  # Push subscriptions with dead letters, and their dead-letter topics.
  dead_lettered = {
    rewrap    = { subscription = google_pubsub_subscription.rewrap_push.id, topic = google_pubsub_topic.rewrap_dead.id }
    incidents = { subscription = google_pubsub_subscription.incidents_push.id, topic = google_pubsub_topic.incidents_dead.id }
  }
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_lettered
  topic    = each.value.topic
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.dead_lettered
  subscription = each.value.subscription
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic_iam_member" "cycle_sends_shards" {
  topic  = google_pubsub_topic.rewrap.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.fn["cycle"].member
}

resource "google_pubsub_topic_iam_member" "events_publisher" {
  for_each = local.event_publishers
  topic    = google_pubsub_topic.events.id
  role     = "roles/pubsub.publisher"
  member   = google_service_account.fn[each.value].member
}

# ---------------------------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------------------------

data "archive_file" "bundle" {
  type        = "zip"
  source_dir  = var.source_dir
  output_path = "${path.module}/.build/rekey-gcp.zip"
  excludes    = ["index.js.map"]
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_storage_bucket_object" "bundle" {
  name   = "rekey-gcp-${data.archive_file.bundle.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.bundle.output_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each    = local.functions
  name        = replace("${var.name_prefix}-${each.key}", "_", "-")
  location    = var.region
  description = each.value.description

  build_config {
    runtime     = "nodejs20"
    entry_point = each.value.entry_point
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.bundle.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.fn[each.key].email
    available_memory      = "512M"
    timeout_seconds       = 540
    # One cycle at a time (a lease guards it too); workers scale out to the shard count.
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    # Only the approvals API takes requests from outside; triggers reach the rest internally.
    ingress_settings               = each.key == "approvals" ? var.approvals_ingress : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    vpc_connector                  = var.vpc_connector
    vpc_connector_egress_settings  = var.vpc_connector == null ? null : "PRIVATE_RANGES_ONLY"
    environment_variables = merge(
      local.common_env,
      contains(local.event_publishers, each.key) ? { REKEY_EVENTS_TOPIC = google_pubsub_topic.events.id } : {},
      each.key == "cycle" ? { REKEY_REWRAP_TOPIC = google_pubsub_topic.rewrap.id } : {},
    )
    dynamic "secret_environment_variables" {
      for_each = local.function_secrets[each.key]
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # The scheduled functions (cycle, costs) ride Eventarc Pub/Sub triggers: a failed run is not
  # retried, the next schedule runs it again. The worker and the compromise function have push
  # subscriptions of their own; key events come from the audit-log triggers below; the
  # approvals API is plain HTTPS.
  dynamic "event_trigger" {
    for_each = contains(keys(local.scheduled), each.key) ? [local.scheduled[each.key]] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value
      retry_policy          = "RETRY_POLICY_DO_NOT_RETRY"
      service_account_email = google_service_account.invoker.email
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.fn]
}

# One trigger per audited method: Eventarc matches methodName exactly.
resource "google_eventarc_trigger" "kms_audit" {
  for_each        = toset(var.kms_audit_methods)
  name            = lower("${var.name_prefix}-kms-${replace(each.value, "/[^A-Za-z0-9]/", "-")}")
  location        = var.region
  service_account = google_service_account.invoker.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.audit.log.v1.written"
  }
  matching_criteria {
    attribute = "serviceName"
    value     = "cloudkms.googleapis.com"
  }
  matching_criteria {
    attribute = "methodName"
    value     = each.value
  }

  destination {
    cloud_run_service {
      service = google_cloudfunctions2_function.fn["key_events"].service_config[0].service
      region  = var.region
    }
  }

  depends_on = [google_project_iam_member.invoker_event_receiver]
}

resource "google_cloud_scheduler_job" "cycle" {
  name        = "${var.name_prefix}-cycle"
  region      = var.region
  description = "Starts rekey's scheduled cycle"
  schedule    = var.schedule
  time_zone   = var.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.cycle.id
    data       = base64encode(jsonencode({ shards = var.shards }))
  }
}

resource "google_cloud_scheduler_job" "costs" {
  name        = "${var.name_prefix}-costs"
  region      = var.region
  description = "Starts rekey's cost report (this month's cost of every key)"
  schedule    = var.cost_schedule
  time_zone   = var.time_zone

  pubsub_target {
    topic_name = google_pubsub_topic.costs.id
    data       = base64encode("{}")
  }
}

# ---------------------------------------------------------------------------------------------
# Metrics: the functions log metrics as JSON (jsonPayload.metric); these count and sum them.
# Labels are the low-cardinality dimensions only; the key ref stays in the log entry.
# ---------------------------------------------------------------------------------------------

locals {
  log_metrics = {
    rewrap_rewrapped = { metric = "rekey.rewrap.rewrapped", description = "DEKs re-wrapped" }
    rewrap_failed    = { metric = "rekey.rewrap.failed", description = "DEKs that could not be re-wrapped" }
    rewrap_throttled = { metric = "rekey.rewrap.throttled", description = "Provider calls throttled during re-wrap" }
    cycle_rotated    = { metric = "rekey.cycle.rotated", description = "Keys rotated by the scheduled cycle" }
    cycle_failed     = { metric = "rekey.cycle.failed", description = "Actions of the scheduled cycle that failed" }
  }
}

# Cost figures, one entry per key and report: labelled by provider, policy and protection (never
# the key). Distributions, so a chart can sum them (cost of the month) or count them (keys).
locals {
  cost_metrics = {
    cost_monthly          = { metric = "rekey.cost.monthly", description = "Cost of the month per key, in the catalog's currency" }
    key_billable_versions = { metric = "rekey.key.billable_versions", description = "Key versions billed in the month" }
    key_rotation_overdue  = { metric = "rekey.key.rotation_overdue", description = "Keys whose primary is older than their policy allows" }
    cost_findings         = { metric = "rekey.cost.findings", description = "Cost findings (idle keys, surplus versions, budget breaches...)" }
    cost_savings          = { metric = "rekey.cost.savings", description = "Estimated monthly saving of acting on the findings" }
  }
}

resource "google_logging_metric" "cost" {
  for_each        = local.cost_metrics
  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric.name=\"${each.value.metric}\""
  value_extractor = "EXTRACT(jsonPayload.metric.value)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key        = "provider"
      value_type = "STRING"
    }
    labels {
      key        = "policy"
      value_type = "STRING"
    }
    labels {
      key        = "protection"
      value_type = "STRING"
    }
  }
  label_extractors = {
    provider   = "EXTRACT(jsonPayload.metric.dimensions.provider)"
    policy     = "EXTRACT(jsonPayload.metric.dimensions.policy)"
    protection = "EXTRACT(jsonPayload.metric.dimensions.protection)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 0.01
    }
  }
}

resource "google_logging_metric" "rekey" {
  for_each        = local.log_metrics
  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric.name=\"${each.value.metric}\""
  value_extractor = "EXTRACT(jsonPayload.metric.value)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    labels {
      key        = "store"
      value_type = "STRING"
    }
    labels {
      key        = "provider"
      value_type = "STRING"
    }
  }
  label_extractors = {
    store    = "EXTRACT(jsonPayload.metric.dimensions.store)"
    provider = "EXTRACT(jsonPayload.metric.dimensions.provider)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

output "functions" {
  value = { for k, f in google_cloudfunctions2_function.fn : k => f.service_config[0].uri }
}

output "topics" {
  value = {
    cycle          = google_pubsub_topic.cycle.id
    rewrap         = google_pubsub_topic.rewrap.id
    rewrap_dead    = google_pubsub_topic.rewrap_dead.id
    events         = google_pubsub_topic.events.id
    costs          = google_pubsub_topic.costs.id
    incidents      = google_pubsub_topic.incidents.id
    incidents_dead = google_pubsub_topic.incidents_dead.id
  }
}

output "approvals_url" {
  description = "The approvals API: GET /approvals, POST /approvals/{id}/approve|deny, with an approver's bearer JWT."
  value       = "${google_cloudfunctions2_function.fn["approvals"].service_config[0].uri}/approvals"
}

output "service_accounts" {
  value = { for k, sa in google_service_account.fn : k => sa.email }
}

output "cloudsql_private_ip" {
  description = "Host for the state URL secret (postgres://user:password@<this>:5432/<db>)."
  value       = data.google_sql_database_instance.state.private_ip_address
}
