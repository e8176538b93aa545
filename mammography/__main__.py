"""``python -m mammography`` (also how torchrun launches it)."""

from mammography.cli.app import main

if __name__ == "__main__":
    main()
