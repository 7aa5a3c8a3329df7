from libs.temporal import main
from services.infra.worker import run

if __name__ == "__main__":
    main("infra", run)
