# rekey's incidents topic: detectors (a SIEM rule, an EDR) publish signed key.compromised
# CloudEvents to it, and one subscription hands each event to the compromiseEvents function.
# The topic takes the CloudEvents schema, so the event arrives exactly as it was signed.
resource "azurerm_eventgrid_topic" "incidents" {
  name                = "${var.name}-incidents-${substr(md5(azurerm_resource_group.rekey.id), 0, 8)}"
  resource_group_name = azurerm_resource_group.rekey.name
  location            = azurerm_resource_group.rekey.location
  input_schema        = "CloudEventSchemaV1_0"
  # Publishers authenticate with Entra ID (EventGrid Data Sender below): no topic access keys.
  local_auth_enabled            = false
  public_network_access_enabled = var.incidents_public_network_access
  minimum_tls_version           = "1.2"
  tags                          = var.tags

  identity {
    type = "SystemAssigned"
  }
}

# Who may report a compromise: only these principals can publish to the topic. The event's
# signature is checked as well (incidents.signing in rekey.yaml).
resource "azurerm_role_assignment" "incident_publishers" {
  for_each             = toset(var.incident_publisher_ids)
  scope                = azurerm_eventgrid_topic.incidents.id
  role_definition_name = "EventGrid Data Sender"
  principal_id         = each.value
}

resource "azurerm_role_assignment" "incidents_deadletter" {
  scope                = azurerm_storage_container.deadletter.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_eventgrid_topic.incidents.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_eventgrid_event_subscription" "compromise" {
  name                  = "${var.name}-compromise"
  scope                 = azurerm_eventgrid_topic.incidents.id
  event_delivery_schema = "CloudEventSchemaV1_0"
  included_event_types  = ["dev.rekey.key.compromised"]

  azure_function_endpoint {
    function_id                       = "${azurerm_linux_function_app.rekey.id}/functions/compromiseEvents"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  # An incident that is not contained yet throws and comes back; each retry resumes it.
  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }

  dead_letter_identity {
    type = "SystemAssigned"
  }

  storage_blob_dead_letter_destination {
    storage_account_id          = azurerm_storage_account.rekey.id
    storage_blob_container_name = azurerm_storage_container.deadletter.name
  }

  depends_on = [azurerm_role_assignment.incidents_deadletter]
}
