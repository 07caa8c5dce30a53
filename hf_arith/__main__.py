"""`python -m hf_arith ...` and `accelerate launch -m hf_arith ...`: the `hf-arith` command line."""

import sys

from hf_arith.cli import main

if __name__ == "__main__":
    sys.exit(main())
