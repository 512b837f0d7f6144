"""``python -m keras_vc.benchmark``: the ``keras-vc`` command."""
import sys

from keras_vc.benchmark.cli import main

# The guard matters: compare's worker processes are spawned, and a spawned child imports the
# parent's main module (as __mp_main__) before running its task.
if __name__ == "__main__":
    sys.exit(main())
