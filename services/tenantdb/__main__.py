from libs.temporal import main
from services.tenantdb.worker import run

if __name__ == "__main__":
    main("tenantdb", run)
