"""The codec server: decodes Temporal payloads for an authenticated operator (the Temporal UI, the CLI)."""
