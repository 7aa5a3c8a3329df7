"""Which activity each provisioning step calls, for tests that inject a
failure at a step or check what a run called."""

from __future__ import annotations

STEP_RPC = {
    "mark_provisioning": "MarkProvisioning",
    "create_realm": "CreateRealm",
    "create_oidc_client": "CreateOidcClient",
    "create_admin_user": "CreateAdminUser",
    "create_schema": "CreateTenantSchema",
    "create_bucket": "CreateBucket",
    "create_dns_records": "UpsertDnsRecords",
    "apply_infrastructure": "ApplyInfrastructure",
    "deploy_application": "CreateDeployment",
    "record_resources": "RecordResources",
    "mark_active": "MarkActive",
}
