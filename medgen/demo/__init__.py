"""``medgen demo``: the shipped checkpoints shown off on embedded data, tied together in one ``index.html``.

One module per stage, each a small function over the Python API (never the command line):

- :mod:`~medgen.demo.real`: real brain slices of the training subject (MNI152) and the held-out subject
  (nibabel's ``anatomical.nii``), prepared as the shipped 2D model's training data was;
- :mod:`~medgen.demo.augment`: an augmentation set with its manifest from a 2D checkpoint;
- :mod:`~medgen.demo.finetune`: fine-tuning the shipped 2D model on the held-out subject, then exporting it;
- :mod:`~medgen.demo.scores`: FID/KID/PRDC with baselines and CIs (``medgen evaluate``'s API);
- :mod:`~medgen.demo.copies`: memorization detection with the held-out subject as calibration null;
- :mod:`~medgen.demo.volume`: one volume from the 3D latent model and its three mid-slices;
- :mod:`~medgen.demo.translation`: one T1 → T2-like translation (skipped when that checkpoint is absent);
- :mod:`~medgen.demo.page`: the ``index.html`` that links every picture, report and manifest.

:mod:`~medgen.demo.stages` caches finished stages, :mod:`~medgen.demo.run` runs them in order and
:mod:`~medgen.demo.browser` renders the page in a headless browser (the render test and the README picture).
"""
