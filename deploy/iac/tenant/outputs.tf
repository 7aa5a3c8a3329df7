output "cluster" {
  description = "The tenant's ECS cluster (CreateDeployment deploys there)."
  value       = terraform_data.cluster.output.name
}

output "network" {
  description = "The label of the tenant's network."
  value       = terraform_data.network.output.label
}

output "resource_ids" {
  description = "Ids of the resources (not a string: never returned by the activity)."
  value       = [terraform_data.network.id, terraform_data.cluster.id]
}

output "state_token" {
  description = "A per-tenant value marked sensitive: kept out of the activity's response and logs."
  value       = sha256("${terraform_data.cluster.id}/${var.tenant_id}")
  sensitive   = true
}
