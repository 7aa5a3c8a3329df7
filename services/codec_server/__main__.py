from libs.temporal import main
from services.codec_server.server import run

if __name__ == "__main__":
    main("codec_server", run)
