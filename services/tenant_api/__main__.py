from libs.temporal import main
from services.tenant_api.server import run

if __name__ == "__main__":
    main("tenant_api", run)
