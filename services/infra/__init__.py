"""The infrastructure worker: storage buckets and DNS records of tenants."""
