"""Deterministic synthetic micro/macro-expression datasets in native on-disk layouts, with ground truth.

Public API::

    from mepipe.synth import synthesize, LAYOUTS
    summary = synthesize("casme2", Path("synth/casme2"), subjects=3, clips_per_subject=4, seed=0)

Modules: :mod:`~mepipe.synth.faces` (base photos, dlib landmarks, subject variants),
:mod:`~mepipe.synth.expressions` (AU fields, emotion sets, temporal profile),
:mod:`~mepipe.synth.render` (head pose, illumination, noise, one remap per frame),
:mod:`~mepipe.synth.layouts` (one writer per dataset layout), :mod:`~mepipe.synth.truth`
(the ground-truth JSON schema) and :mod:`~mepipe.synth.api` (:func:`synthesize`).
"""

from mepipe.synth.api import GENERATOR_VERSION, SynthSummary, synthesize
from mepipe.synth.layouts import LAYOUTS
from mepipe.synth.truth import GROUND_TRUTH_FILE, read_ground_truth

__all__ = [
    "GENERATOR_VERSION",
    "GROUND_TRUTH_FILE",
    "LAYOUTS",
    "SynthSummary",
    "read_ground_truth",
    "synthesize",
]
