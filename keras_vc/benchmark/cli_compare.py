"""``keras-vc compare``: checks the parsed arguments, runs the comparison and prints its tables."""

import dataclasses
import shlex

from keras_vc.benchmark.cli_usage import _UsageError


def run(args, argv):
    from keras_vc.benchmark import compare
    from keras_vc.benchmark import plan as plan_lib
    from keras_vc.benchmark import report as report_lib
    from keras_vc.benchmark import report_posthoc
    from keras_vc.data import loaders

    try:
        plan_lib.ordered_methods(args.methods)
    except ValueError as error:
        raise _UsageError(str(error).replace("`methods`", "--methods"))
    datasets = args.dataset or list(compare.DEFAULT_DATASETS)
    for spec in datasets:
        try:
            loaders.check_spec(spec)
        except loaders.DatasetError as error:
            raise _UsageError(str(error))
    if args.image_size is not None and not any(s.startswith("folder:") for s in datasets):
        raise _UsageError("--image-size applies to folder: datasets only")
    plan = plan_lib.QUICK_PLAN if args.quick else plan_lib.Plan()
    seeds = args.seeds or (1 if args.quick else 3)
    if args.low_data is not None:
        plan = dataclasses.replace(plan, low_data_fractions=args.low_data)
    if args.robustness_samples is not None:
        plan = dataclasses.replace(plan, robustness_samples=args.robustness_samples)
    if args.alpha is not None:
        if len(set(args.alpha)) != len(args.alpha):
            raise _UsageError(f"--alpha: expected distinct levels, got {args.alpha}")
        plan = dataclasses.replace(plan, alphas=tuple(args.alpha))
    if args.no_open_set:
        plan = dataclasses.replace(plan, open_set=False)
    if args.open_set:
        plan = dataclasses.replace(plan, open_set=True)
    if args.calibrators is not None:
        plan = dataclasses.replace(plan, calibrators=args.calibrators)
    command = "keras-vc " + " ".join(shlex.quote(a) for a in argv)
    workers = args.workers or compare.default_workers()
    report = compare.run_compare(
        datasets, args.methods, list(range(seeds)), out_dir=args.out, workers=workers,
        plan=plan, epochs=args.epochs or (plan_lib.QUICK_EPOCHS if args.quick else None),
        data_dir=args.data_dir, download=args.download,
        command=command, image_size=args.image_size, log=lambda line: print(line, flush=True))
    for name in report["datasets"]:
        print()
        print(f"== {name}: calibration (test split, mean ± std over {seeds} seed(s)) ==")
        print(report_lib.calibration_table(report, name))
        print()
        print(f"== {name}: OOD detection, AUROC ==")
        print(report_lib.ood_table(report, name))
        paired = report_lib.paired_table(report, name,
                                         report_posthoc.paired_columns(report))
        if paired:
            print()
            print(f"== {name}: paired difference vs softmax (seeds where the sign held) ==")
            print(paired)
    print()
    print(f"Reports written to {args.out}/: compare.json, compare.md, README_results.md and "
          f"PNGs ({report['wall_seconds'] / 60:.1f} min).")
    return 0
