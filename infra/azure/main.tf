locals {
  state_table  = "rekeystate"
  work_queue   = "rekey-rewrap"
  events_queue = "rekey-events"
  vaults       = { for id in var.key_vault_ids : element(split("/", id), length(split("/", id)) - 1) => id }
}

resource "azurerm_resource_group" "rekey" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = var.tags
}

resource "azurerm_log_analytics_workspace" "rekey" {
  name                = "${var.name}-logs"
  location            = azurerm_resource_group.rekey.location
  resource_group_name = azurerm_resource_group.rekey.name
  sku                 = "PerGB2018"
  retention_in_days   = 90
  tags                = var.tags
}

# Logs and metric lines of every invocation (traces); queries in docs/serverless-azure.md.
resource "azurerm_application_insights" "rekey" {
  name                = "${var.name}-insights"
  location            = azurerm_resource_group.rekey.location
  resource_group_name = azurerm_resource_group.rekey.name
  workspace_id        = azurerm_log_analytics_workspace.rekey.id
  application_type    = "Node.JS"
  tags                = var.tags
}
