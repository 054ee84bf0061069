# Key Vault publishes key events to its Event Grid system topic; one subscription per vault
# delivers the three key events rekey reacts to, to the keyVaultEvents function.
resource "azurerm_eventgrid_system_topic" "vault" {
  for_each            = local.vaults
  name                = "${var.name}-${each.key}-events"
  resource_group_name = azurerm_resource_group.rekey.name
  location            = azurerm_resource_group.rekey.location
  source_resource_id  = each.value
  topic_type          = "Microsoft.KeyVault.vaults"
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }
}

# Dead-lettering writes with the topic's identity, to the dead-letter container only.
resource "azurerm_role_assignment" "deadletter" {
  for_each             = local.vaults
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_system_topic.vault[each.key].identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_eventgrid_system_topic_event_subscription" "key_events" {
  for_each            = local.vaults
  name                = "${var.name}-key-events"
  system_topic        = azurerm_eventgrid_system_topic.vault[each.key].name
  resource_group_name = azurerm_resource_group.rekey.name

  included_event_types = [
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.KeyExpired",
  ]

  azure_function_endpoint {
    function_id                       = "${azurerm_linux_function_app.rekey.id}/functions/keyVaultEvents"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  retry_policy {
    max_delivery_attempts = 10
    event_time_to_live    = 1440
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.rekey.id
    storage_blob_container_name = azurerm_storage_container.deadletter.name
  }

  depends_on = [azurerm_role_assignment.deadletter]
}
