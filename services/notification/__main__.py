from libs.temporal import main
from services.notification.worker import run

if __name__ == "__main__":
    main("notification", run)
