"""The gRPC facade: TenantService, health and reflection."""
