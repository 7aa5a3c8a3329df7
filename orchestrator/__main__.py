from libs.temporal import main
from orchestrator.worker import run

if __name__ == "__main__":
    main("orchestrator", run)
