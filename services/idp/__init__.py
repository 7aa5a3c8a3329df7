"""Identity worker: a realm (or organization), an OIDC client and a first admin per tenant."""
