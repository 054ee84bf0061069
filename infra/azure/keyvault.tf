# Exactly the key operations rekey performs, and nothing else: list and read keys and versions,
# enable/disable versions, rotate, read and set rotation policies, wrap and unwrap DEKs.
# No key creation, import, deletion, purge, backup or signing; no secrets or certificates.
# (The built-in "Key Vault Crypto Officer" grants Microsoft.KeyVault/vaults/keys/*.)
resource "azurerm_role_definition" "rekey_keys" {
  name        = "${var.name} key rotation (${azurerm_resource_group.rekey.name})"
  scope       = var.key_vault_ids[0]
  description = "rekey: rotate keys, manage rotation policies and versions, re-wrap data keys."

  permissions {
    actions = []
    data_actions = [
      "Microsoft.KeyVault/vaults/keys/read",
      "Microsoft.KeyVault/vaults/keys/update/action",
      "Microsoft.KeyVault/vaults/keys/rotate/action",
      "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
      "Microsoft.KeyVault/vaults/keyrotationpolicies/write",
      "Microsoft.KeyVault/vaults/keys/wrap/action",
      "Microsoft.KeyVault/vaults/keys/unwrap/action",
    ]
    not_data_actions = []
  }

  assignable_scopes = var.key_vault_ids
}

resource "azurerm_role_assignment" "keys" {
  for_each           = local.vaults
  scope              = each.value
  role_definition_id = azurerm_role_definition.rekey_keys.role_definition_resource_id
  principal_id       = azurerm_linux_function_app.rekey.identity[0].principal_id
  principal_type     = "ServicePrincipal"
}
