from libs.temporal import main
from services.idp.worker import run

if __name__ == "__main__":
    main("idp", run)
