import sys

from keras_vc.benchmark.cli import main

sys.exit(main())
