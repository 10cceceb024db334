"""``python -m softmaxbench`` is the ``softmaxbench`` console script."""

from softmaxbench.suite.cli.main import main

if __name__ == "__main__":
    main()
