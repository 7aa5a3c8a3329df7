from services.tenant_api.cli import main

main()
