"""The data of one compare task: the split it trains on, its OOD sets and robustness inputs."""

import numpy as np

from keras_vc.benchmark import plan as plan_lib
from keras_vc.data import ood
from keras_vc.robustness import corruptions as corruptions_lib
from keras_vc.robustness import subsets


def far_ood_sets(split, seed, plan):
    """The far-OOD sets of a split: ``{name: (description, x)}``.

    Grey or RGB images get photo patches (8x8 grey patches of scikit-learn's sample photos for
    digits); signals, vectors and other images get their test inputs with positions shuffled.
    """
    n = plan.ood_samples or len(split.y_test)
    if split.kind == "image" and split.input_shape[-1] in (1, 3):
        shape = split.input_shape
        try:
            patches = ood.photo_patches(n, shape, split.value_range, seed=seed)
            scale = "block-downscaled 4-8x"
        except ValueError:  # large images: smaller blocks
            patches = ood.photo_patches(n, shape, split.value_range, seed=seed, downscale=(1, 2))
            scale = "block-downscaled 1-2x"
        grey = "grey " if shape[-1] == 1 else ""
        return {"photo_patches": (
            f"{n} {shape[0]}x{shape[1]} {grey}patches of scikit-learn's sample photos (china, "
            f"flower), {scale}, each min-max scaled to the data range", patches)}
    index = np.random.default_rng(seed).choice(len(split.y_test), size=n,
                                               replace=n > len(split.y_test))
    what = {"signal": "time steps", "image": "pixels"}.get(split.kind, "features")
    return {"shuffled": (
        f"{n} test inputs with their {what} randomly permuted (values kept, shape destroyed)",
        ood.shuffle_positions(split.x_test[index], seed=seed))}


def robustness_subset(split, plan, seed):
    """Indices of the fixed, stratified test subset used for attacks and corruptions."""
    n = len(split.y_test)
    if plan.robustness_samples >= n:
        return np.arange(n)
    return subsets.stratified_subset_indices(split.y_test, plan.robustness_samples / n, seed)


def task_data(task, dataset):
    """The split a task trains on, its evaluation sets, and descriptions for the report."""
    split = dataset.split(task.seed)
    data = {"eval_split": split, "ood_sets": {}, "descriptions": {}}
    if task.config == "full":
        data["train_split"] = split
        for name, (description, x) in far_ood_sets(split, task.seed, task.plan).items():
            data["ood_sets"][name] = x
            data["descriptions"][name] = description
        if task.plan.robustness:
            index = robustness_subset(split, task.plan, task.seed)
            data["x_robust"], data["y_robust"] = split.x_test[index], split.y_test[index]
            data["corrupted"] = corruptions_lib.corrupt_all(
                data["x_robust"], split.value_range, seed=task.seed,
                severities=task.plan.corruption_severities)
    elif task.config == "open_set":
        open_split = ood.open_set_split(split)
        data["train_split"] = data["eval_split"] = open_split.split
        data["ood_sets"]["held_out_classes"] = open_split.x_unknown
        data["descriptions"]["held_out_classes"] = (
            f"test samples of the held-out classes {open_split.num_known}-"
            f"{split.num_classes - 1} (model trained on classes 0-{open_split.num_known - 1})")
    else:
        data["train_split"] = subsets.subsample_training(
            split, plan_lib.config_fraction(task.config), seed=task.seed)
    return data
