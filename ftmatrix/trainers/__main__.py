"""`python -m ftmatrix.trainers RUN_DIR`: run one job in this process."""

import sys

from ftmatrix.trainers.job import main

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m ftmatrix.trainers RUN_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
