"""The embedded stack: real Temporal, PostgreSQL, AWS APIs and SMTP started
locally, plus every Tenantry process. Used by `make dev`, the tests and the
benchmarks, so all three run the same thing."""
