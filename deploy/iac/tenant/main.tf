# Dedicated infrastructure of one silo tenant.
#
# Built-in resources only (terraform_data, locals) and the built-in s3
# backend: `init` downloads nothing, so the module runs on a machine without
# registry access. The ECS cluster named here is created by the
# CreateDeployment activity (it reads the `cluster` output), tagged with the
# tenant; swap these terraform_data resources for provider resources
# (aws_ecs_cluster, aws_vpc, ...) where a provider mirror is available.

terraform {
  required_version = ">= 1.10"

  # State in S3, one object per tenant, locked (use_lockfile: Terraform >= 1.10,
  # OpenTofu >= 1.10). The infra worker passes bucket, key, region and locking
  # as -backend-config arguments to init, and the credentials in the CLI's
  # environment; it also adds this block to its copy, whatever the module says.
  backend "s3" {}
}

variable "tenant_id" {
  description = "The tenant's id: a DNS label."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.tenant_id))
    error_message = "The tenant_id must be a lower-case DNS label of 3 to 32 characters."
  }
}

variable "plan_tier" {
  description = "The tenant's plan tier (PLAN_TIER_SILO for dedicated infrastructure)."
  type        = string
  default     = "PLAN_TIER_SILO"
}

locals {
  cluster_name  = "tenantry-${var.tenant_id}"
  network_label = "tenantry-${var.tenant_id}-net"
  tags = {
    "tenantry:tenant-id" = var.tenant_id
    "tenantry:plan-tier" = var.plan_tier
  }
}

resource "terraform_data" "network" {
  input = {
    label = local.network_label
    tags  = local.tags
  }
}

resource "terraform_data" "cluster" {
  input = {
    name    = local.cluster_name
    network = terraform_data.network.output.label
    tags    = local.tags
  }
}
