terraform {
  required_version = ">= 1.6"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

provider "azurerm" {
  features {}
  # rekey's storage account allows no shared keys: Terraform reaches its data plane with Entra ID.
  storage_use_azuread = true
}
