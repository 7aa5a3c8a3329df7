"""The lifecycle workflows, one module each. Deterministic: every effect is an activity."""
