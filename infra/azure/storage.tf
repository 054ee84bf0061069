# One account for the Functions host (AzureWebJobsStorage) and rekey itself: the state table,
# the re-wrap queue (and its -poison queue, made by the host) and the events queue.
resource "azurerm_storage_account" "rekey" {
  name                            = "${var.name}${substr(md5(azurerm_resource_group.rekey.id), 0, 8)}"
  resource_group_name             = azurerm_resource_group.rekey.name
  location                        = azurerm_resource_group.rekey.location
  account_tier                    = "Standard"
  account_replication_type        = "ZRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  allow_nested_items_to_be_public = false
  default_to_oauth_authentication = true
  tags                            = var.tags
}

resource "azurerm_storage_table" "state" {
  name                 = local.state_table
  storage_account_name = azurerm_storage_account.rekey.name
}

resource "azurerm_storage_queue" "rewrap" {
  name                 = local.work_queue
  storage_account_name = azurerm_storage_account.rekey.name
}

resource "azurerm_storage_queue" "events" {
  name                 = local.events_queue
  storage_account_name = azurerm_storage_account.rekey.name
}

# Event Grid deliveries that failed every retry land here.
resource "azurerm_storage_container" "deadletter" {
  name                  = "rekey-deadletter"
  storage_account_id    = azurerm_storage_account.rekey.id
  container_access_type = "private"
}

# The app's identity: data-plane roles on this account only, nothing at subscription scope.
# Blob Data Owner is what the Functions host needs for AzureWebJobsStorage (timer and queue
# leases); Table and Queue Data Contributor are rekey's state and queues.
resource "azurerm_role_assignment" "storage" {
  for_each = toset([
    "Storage Blob Data Owner",
    "Storage Table Data Contributor",
    "Storage Queue Data Contributor",
  ])
  scope                = azurerm_storage_account.rekey.id
  role_definition_name = each.value
  principal_id         = azurerm_linux_function_app.rekey.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
