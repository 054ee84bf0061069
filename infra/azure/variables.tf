variable "name" {
  description = "Prefix for every resource name (letters and digits, 3-11 characters)."
  type        = string
  default     = "rekey"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,10}$", var.name))
    error_message = "name must be 3-11 lowercase letters and digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string
}

variable "key_vault_ids" {
  description = "Resource ids of the Key Vaults rekey manages (RBAC authorization enabled). Each gets a role assignment and an Event Grid system topic."
  type        = list(string)
  validation {
    condition     = length(var.key_vault_ids) > 0 && alltrue([for id in var.key_vault_ids : can(regex("(?i)/providers/Microsoft.KeyVault/vaults/[^/]+$", id))])
    error_message = "key_vault_ids must list Key Vault resource ids (/subscriptions/.../providers/Microsoft.KeyVault/vaults/NAME)."
  }
}

variable "package_zip" {
  description = "Zip of dist/azure after npm run build and npm install --omit=dev in it."
  type        = string
}

variable "plan_sku" {
  description = "App Service plan: EP1 (Elastic Premium) runs from the package with identity-only storage; Y1 (Consumption) also works where your region and policy allow it."
  type        = string
  default     = "EP1"
}

variable "schedule" {
  description = "NCRONTAB schedule of the scheduled cycle (seconds first)."
  type        = string
  default     = "0 0 */6 * * *"
}

variable "cost_schedule" {
  description = "NCRONTAB schedule of the cost report (seconds first)."
  type        = string
  default     = "0 0 6 * * *"
}

variable "incident_signing_secret" {
  description = "Key Vault secret with the HMAC key of key.compromised events, and the app setting that carries it (the secretEnv of incidents.signing.hmac in rekey.yaml). The vault must use Azure RBAC. Null when events are signed with JWS (public key bundled beside rekey.yaml) or not accepted."
  type = object({
    key_vault_id = string
    name         = string
    setting      = optional(string, "REKEY_INCIDENT_KEY")
  })
  default = null
}

variable "approval_token_secret" {
  description = "Key Vault secret with the HS256 key of approver tokens, and the app setting that carries it (the secretEnv of approvals.tokens.hmac). Null when tokens are checked with a public key (approvals.tokens.jws)."
  type = object({
    key_vault_id = string
    name         = string
    setting      = optional(string, "REKEY_APPROVAL_TOKEN_KEY")
  })
  default = null
}

variable "incident_publisher_ids" {
  description = "Object ids of the principals (a SIEM's managed identity, a detector's service principal) allowed to publish key.compromised events to the incidents topic."
  type        = list(string)
  default     = []
}

variable "incidents_public_network_access" {
  description = "Whether the incidents topic accepts events over the public network (false: private endpoints only)."
  type        = bool
  default     = true
}

variable "shards" {
  description = "Re-wrap shards per job (parallel queue workers per key and store)."
  type        = number
  default     = 4
}

variable "app_settings" {
  description = "Extra app settings, e.g. DEK store URLs as Key Vault references: { ORDERS_DATABASE_URL = \"@Microsoft.KeyVault(SecretUri=...)\" }."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "tags" {
  type    = map(string)
  default = {}
}
