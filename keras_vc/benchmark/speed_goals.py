"""What one ``keras-vc speed`` run measures (:class:`Settings`) and the goals it is held to."""

import dataclasses
import math
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures.

    Attributes:
        head_sizes: ``(batch, feature_dim, num_classes)`` triples of the head-alone grid.
        model_batches: batch sizes of the full-model measurement.
        model_classes: classes of the full model.
        model_widths: filters of the ResNet's stages.
        repeats: interleaved timed repeats per configuration.
        warmup_steps: untimed steps after compilation.
        block_seconds: target duration of one timed block; the steps per block are set from
            the baseline's warm-up so that a block lasts about this long (at least 1 step).
        learning_rate: of the SGD optimizer (momentum 0.9) shared by every variant.
        seed: seed of the data and of the initial weights.
    """

    head_sizes: tuple = ((256, 512, 10), (256, 512, 1000), (256, 512, 10000),
                         (256, 2048, 1000))
    model_batches: tuple = (128, 256)
    model_classes: int = 10
    model_widths: tuple = (16, 32, 64)
    repeats: int = 7
    warmup_steps: int = 2
    block_seconds: float = 0.25
    learning_rate: float = 0.01
    seed: int = 0


# Tiny sizes to check that everything runs (its figures mean nothing); one ResNet stage, since
# XLA's compilation of the convolutions dominates a quick run on a CPU.
QUICK = Settings(head_sizes=((16, 8, 10), (16, 8, 50)), model_batches=(8,), model_widths=(4,),
                 repeats=3, warmup_steps=1, block_seconds=0.0)


@dataclasses.dataclass(frozen=True)
class Goal:
    """A target of the issue: the worst median ratio of ``variants`` must stay under ``limit``."""

    title: str
    scope: str
    variants: tuple
    limit: float
    batch: Optional[int] = None
    classes: Optional[int] = None

    def matches(self, result):
        config = result["config"]
        return (result["scope"] == self.scope
                and (self.batch is None or config["batch"] == self.batch)
                and (self.classes is None or config["classes"] == self.classes))


GOALS = (
    Goal("DistanceLogits, full model", "model", ("isomax_plus", "dismax", "dismax_fpr"), 1.05),
    Goal("VariationalSoftmax, full model", "model",
         ("vc", "vc_no_consistency", "vc_deterministic"), 1.10),
    Goal("SNNL on three layers, full model at batch 256", "model", ("snnl",), 1.25, batch=256),
    Goal("head alone at K = 10000 (time)", "head",
         ("isomax_plus", "dismax", "vc", "vc_no_consistency", "vc_deterministic"), 1.5,
         classes=10000),
)


def validate_settings(settings):
    """Raises ValueError naming the first field of ``settings`` that is out of range."""
    for index, size in enumerate(settings.head_sizes):
        if len(size) != 3 or not all(isinstance(v, int) and v >= 1 for v in size):
            raise ValueError(f"`head_sizes[{index}]` must be three positive integers "
                             f"(batch, feature_dim, num_classes), got {size}.")
        if size[2] < 2:
            raise ValueError(f"`head_sizes[{index}]` needs at least 2 classes, got {size[2]}.")
    if not all(isinstance(b, int) and b >= 1 for b in settings.model_batches):
        raise ValueError(f"`model_batches` must be positive integers, got "
                         f"{settings.model_batches}.")
    if not settings.head_sizes and not settings.model_batches:
        raise ValueError("`head_sizes` and `model_batches` are both empty: nothing to measure.")
    if not (isinstance(settings.model_classes, int) and settings.model_classes >= 2):
        raise ValueError(f"`model_classes` must be an integer >= 2, got "
                         f"{settings.model_classes}.")
    if not settings.model_widths or not all(isinstance(w, int) and w >= 1
                                            for w in settings.model_widths):
        raise ValueError(f"`model_widths` must be positive integers, got "
                         f"{settings.model_widths}.")
    if not (isinstance(settings.repeats, int) and settings.repeats >= 1):
        raise ValueError(f"`repeats` must be an integer >= 1, got {settings.repeats}.")
    if not (isinstance(settings.warmup_steps, int) and settings.warmup_steps >= 1):
        raise ValueError(f"`warmup_steps` must be an integer >= 1, got {settings.warmup_steps}.")
    if not (settings.block_seconds >= 0 and math.isfinite(settings.block_seconds)):
        raise ValueError(f"`block_seconds` must be a finite number >= 0, got "
                         f"{settings.block_seconds}.")
    if not (settings.learning_rate > 0 and math.isfinite(settings.learning_rate)):
        raise ValueError(f"`learning_rate` must be a finite number > 0, got "
                         f"{settings.learning_rate}.")



def config_label(scope, config):
    """A configuration's column title: ``B=.. D=.. K=..`` (head) or ``B=.. K=..`` (model)."""
    if scope == "head":
        return f"B={config['batch']} D={config['features']} K={config['classes']}"
    return f"B={config['batch']} K={config['classes']}"


def evaluate_goals(results, goals=GOALS):
    """Each goal with the worst median ratio measured for it and whether it is met."""
    evaluated = []
    for goal in goals:
        worst = None
        for result in results:
            if not goal.matches(result):
                continue
            for name in goal.variants:
                entry = result["variants"].get(name, {})
                if entry.get("status") != "ok":
                    continue
                ratio = entry["ratio"]["median"]
                if worst is None or ratio > worst["ratio"]:
                    worst = {"ratio": ratio, "variant": name,
                             "config": config_label(result["scope"], result["config"])}
        status = "not measured" if worst is None else (
            "met" if worst["ratio"] <= goal.limit else "missed")
        evaluated.append({"goal": goal.title, "limit": goal.limit, "status": status,
                          "worst": worst})
    return evaluated

