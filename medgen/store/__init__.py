"""The weights store: model cards, the registry of exported models, checkpoints, exports and loading.

Its reading side (:mod:`.card`, :mod:`.registry`, :mod:`.ckpt`) is a leaf that :mod:`medgen.models` builds on
(``from_pretrained``); :mod:`.load` and :mod:`.export` sit above the models. Import the submodules directly:
this package imports nothing, so ``medgen checkpoints list`` never imports torch.
"""
