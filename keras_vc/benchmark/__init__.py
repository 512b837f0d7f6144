"""The ``keras-vc`` command: benchmarks of every method against a softmax baseline."""
