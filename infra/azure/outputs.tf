output "function_app_name" {
  value = azurerm_linux_function_app.rekey.name
}

output "principal_id" {
  description = "The app's managed identity (grant it access to DEK stores as needed)."
  value       = azurerm_linux_function_app.rekey.identity[0].principal_id
}

output "storage_account" {
  value = azurerm_storage_account.rekey.name
}

output "state_table" {
  value = azurerm_storage_table.state.name
}

output "work_queue" {
  value = azurerm_storage_queue.rewrap.name
}

output "events_queue" {
  value = azurerm_storage_queue.events.name
}

output "approvals_url" {
  description = "The approvals API (bearer JWT of an approver on every request)."
  value       = "https://${azurerm_linux_function_app.rekey.default_hostname}/api/approvals"
}

output "incidents_topic_endpoint" {
  description = "Where detectors publish key.compromised CloudEvents (Entra ID, EventGrid Data Sender)."
  value       = azurerm_eventgrid_topic.incidents.endpoint
}

output "incidents_topic_id" {
  value = azurerm_eventgrid_topic.incidents.id
}
