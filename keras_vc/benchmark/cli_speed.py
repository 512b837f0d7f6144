"""``keras-vc speed``: checks the parsed arguments, runs the speed benchmark and prints it."""

from keras_vc.benchmark.cli_usage import _UsageError


def _speed_command(args):
    words = ["keras-vc", "speed"]
    if args.quick:
        words.append("--quick")
    for option in ("backend", "sizes", "model_batches", "scopes", "variants", "repeats"):
        value = getattr(args, option)
        if value is None:
            continue
        if option == "sizes":
            value = ",".join("x".join(str(v) for v in size) for size in value)
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        words += [f"--{option.replace('_', '-')}", str(value)]
    words += ["--out", args.out]
    return " ".join(words)


def run(args):
    import dataclasses
    import os

    # TensorFlow keeps allocator statistics on a CPU only with its BFC allocator; it reads this
    # variable when it first allocates, which has not happened yet in this process.
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")
    import keras

    from keras_vc.benchmark import registry
    from keras_vc.benchmark import speed

    backend = keras.backend.backend()
    if args.backend is not None and args.backend != backend:
        raise _UsageError(f"--backend {args.backend}, but Keras runs on {backend}: Keras reads "
                          f"KERAS_BACKEND when it is first imported, so run "
                          f"`KERAS_BACKEND={args.backend} keras-vc speed ...`")
    if backend not in speed.SUPPORTED_BACKENDS:
        raise _UsageError(f"the {backend} backend is not supported; expected one of "
                          f"{speed.SUPPORTED_BACKENDS}")
    settings = speed.QUICK if args.quick else speed.Settings()
    changes = {}
    if args.sizes is not None:
        changes["head_sizes"] = tuple(args.sizes)
    if args.model_batches is not None:
        changes["model_batches"] = tuple(args.model_batches)
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    settings = dataclasses.replace(settings, **changes)
    scopes = args.scopes or list(speed.SCOPES)
    unknown = [scope for scope in scopes if scope not in speed.SCOPES]
    if unknown:
        raise _UsageError(f"unknown scope(s) {unknown}; expected {list(speed.SCOPES)}")
    message = registry.unknown_names(args.variants or [], list(registry.speed_variants()),
                                     "variant")
    if message:
        raise _UsageError(f"--variants: {message}")
    try:
        speed.validate_settings(settings)
    except ValueError as error:
        raise _UsageError(str(error))
    command = _speed_command(args)
    if backend != "tensorflow":
        command = f"KERAS_BACKEND={backend} {command}"
    report = speed.run_speed(args.variants, settings, scopes, args.out, command=command)
    print()
    print(speed.format_markdown(report))
    print(f"Reports written to {args.out}/ (speed.json, speed.md)")
    return 0
