"""`tenantry`: a command line over the TenantService gRPC API.

parsing.py reads the command line, output.py says what is printed (text for
people, JSON for programs), commands.py makes the calls and picks the exit code.
"""

from services.tenant_api.cli.commands import main

__all__ = ["main"]
