"""The orchestrator: lifecycle workflows only, no activities."""
