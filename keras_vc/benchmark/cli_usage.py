"""The error a ``keras-vc`` subcommand raises for bad input: one line on stderr, exit status 2."""


class _UsageError(Exception):
    pass
