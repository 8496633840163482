"""Reading models saved by medgen before models and Lightning tasks were split (checkpoint metadata without ``format``).

Before, a Lightning module (``medgen.lit.DiffusionModule`` …) was the model: checkpoints named it in
``medgen.module`` with its constructor arguments in ``hyper_parameters``, and exports named it in ``config.yaml``.
Its state-dict names (``net.*``, ``autoencoder.*``, ``latent_scale``) are the models' own, so only the class and
its arguments need translating. Class names are matched as strings: nothing of the old classes is imported.
"""

from __future__ import annotations

from typing import Any

#: Old Lightning module class (last dotted component) → the model class that replaces it.
LEGACY_MODULES = {
    "DiffusionModule": "medgen.models.DiffusionModel",
    "FlowMatchingModule": "medgen.models.FlowModel",
    "LatentDiffusionModule": "medgen.models.LatentDiffusionModel",
    "AutoencoderModule": "medgen.models.Autoencoder",
}

#: The arguments each new model takes, besides ``sampling`` (built from the old sampler/solver arguments).
_MODEL_ARGS = {
    "medgen.models.DiffusionModel": ("net", "objective", "sample_size"),
    "medgen.models.FlowModel": ("net", "objective", "sample_size"),
    "medgen.models.LatentDiffusionModel": ("net", "autoencoder", "latent_scale", "objective", "sample_size"),
    "medgen.models.Autoencoder": ("net", "kl_weight", "ssim_weight", "sample_size"),
}


def legacy_class(class_path: str) -> str | None:
    """The model class replacing an old ``medgen.lit`` module class path, or None for any other path."""
    if not class_path.startswith("medgen.lit."):
        return None
    return LEGACY_MODULES.get(class_path.rpartition(".")[2])


def translate(class_path: str, init_args: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(model class path, model init args)`` for an old module's class path and arguments, or None.

    Training-only arguments (optimizer, warm-up, validation pictures, fine-tuning) are dropped; ``sampler`` /
    ``solver``, ``num_inference_steps`` and ``guidance`` become ``sampling``.
    """
    new = legacy_class(class_path)
    if new is None:
        return None
    args = {k: init_args[k] for k in _MODEL_ARGS[new] if k in init_args}
    if new != "medgen.models.Autoencoder":
        method = init_args.get("solver", init_args.get("sampler"))
        sampling = {
            "method": method,
            "num_steps": init_args.get("num_inference_steps"),
            "guidance": init_args.get("guidance"),
        }
        args["sampling"] = {k: v for k, v in sampling.items() if v is not None}
    return new, args
