"""TensorFlow's start-up lines kept out of the ``keras-vc`` output.

TensorFlow writes a few C++ lines ("All log messages before absl::InitializeLog() ...", "Could
not find cuda drivers ...") to the process's standard error while it is imported, before its
logging is configured and whatever ``TF_CPP_MIN_LOG_LEVEL`` says. :func:`stderr_kept_aside`
sends file descriptor 2 to a temporary file for the duration of a block and replays what was
written there only if the block fails. No Keras import here: the CLI enters it before Keras is
first imported.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def stderr_kept_aside(tail=5000):
    """Runs the block with the process's standard error captured; shows it only on failure.

    Args:
        tail: how many characters of the captured output are replayed on failure.
    """
    sys.stderr.flush()
    captured = tempfile.TemporaryFile()
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if failed:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace")[-tail:])
        captured.close()
