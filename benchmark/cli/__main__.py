"""`python -m benchmark.cli`."""

from benchmark.cli import main

if __name__ == "__main__":
    main()
