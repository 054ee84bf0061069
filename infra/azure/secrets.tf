# The HMAC secrets rekey.yaml names by environment variable (incidents.signing.hmac.secretEnv,
# approvals.tokens.hmac.secretEnv) become app settings holding Key Vault references, which the
# platform resolves with the app's identity. The identity may read those two secrets and no other.
locals {
  secrets = {
    for k, s in {
      incident_signing = var.incident_signing_secret
      approval_tokens  = var.approval_token_secret
    } : k => s if s != null
  }
  secret_settings = {
    for k, s in local.secrets :
    s.setting => "@Microsoft.KeyVault(VaultName=${element(split("/", s.key_vault_id), length(split("/", s.key_vault_id)) - 1)};SecretName=${s.name})"
  }
}

resource "azurerm_role_assignment" "secrets" {
  for_each             = local.secrets
  scope                = "${each.value.key_vault_id}/secrets/${each.value.name}"
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_linux_function_app.rekey.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
