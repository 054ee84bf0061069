locals {
  # What functions/azure/settings.ts reads; REKEY_STORAGE__* is also the queue trigger's
  # connection (identity-based, Functions convention) and %REKEY_WORK_QUEUE%, %REKEY_SCHEDULE% and
  # %REKEY_COST_SCHEDULE% are resolved by the host in the function bindings.
  app_settings = {
    REKEY_STORAGE__accountName = azurerm_storage_account.rekey.name
    REKEY_STATE_TABLE          = azurerm_storage_table.state.name
    REKEY_WORK_QUEUE           = azurerm_storage_queue.rewrap.name
    REKEY_EVENTS_QUEUE         = azurerm_storage_queue.events.name
    REKEY_SCHEDULE             = var.schedule
    REKEY_COST_SCHEDULE        = var.cost_schedule
    REKEY_SHARDS               = tostring(var.shards)
    REKEY_ACTOR                = "azure-function:${var.name}"
    WEBSITE_RUN_FROM_PACKAGE   = "1"
    NODE_OPTIONS               = "--enable-source-maps"
  }
}

resource "azurerm_service_plan" "rekey" {
  name                = "${var.name}-plan"
  resource_group_name = azurerm_resource_group.rekey.name
  location            = azurerm_resource_group.rekey.location
  os_type             = "Linux"
  sku_name            = var.plan_sku
  tags                = var.tags
}

resource "azurerm_linux_function_app" "rekey" {
  name                = "${var.name}-${substr(md5(azurerm_resource_group.rekey.id), 0, 8)}"
  resource_group_name = azurerm_resource_group.rekey.name
  location            = azurerm_resource_group.rekey.location
  service_plan_id     = azurerm_service_plan.rekey.id

  # AzureWebJobsStorage through the managed identity: no account key anywhere.
  storage_account_name          = azurerm_storage_account.rekey.name
  storage_uses_managed_identity = true
  https_only                    = true
  zip_deploy_file               = var.package_zip

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.rekey.connection_string
    minimum_tls_version                    = "1.2"
    ftps_state                             = "Disabled"
    application_stack {
      node_version = "20"
    }
  }

  # The approvals function is anonymous at the host (functions/azure/approvals.ts): every request
  # must carry an approver's JWT, checked by rekey before anything else. Its route is
  # /api/approvals (output approvals_url).
  app_settings = merge(var.app_settings, local.app_settings, local.secret_settings)

  tags = var.tags
}
