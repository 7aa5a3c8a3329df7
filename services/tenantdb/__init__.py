"""Tenant-data worker: the tenant registry and one database schema per tenant."""
