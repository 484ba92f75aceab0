"""``python -m mepipe``: the same command line as ``mepipe``."""

from mepipe.cli import main

if __name__ == "__main__":
    main()
