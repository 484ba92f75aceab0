"""Layout writers, one module per dataset layout, registered in :data:`LAYOUTS`."""

from mepipe.synth.layouts import casme2 as _casme2  # noqa: F401  (registers "casme2")
from mepipe.synth.layouts import dfew as _dfew  # noqa: F401
from mepipe.synth.layouts import samm as _samm  # noqa: F401
from mepipe.synth.layouts import smic as _smic  # noqa: F401
from mepipe.synth.layouts.base import LAYOUTS, ClipPlan, FrameSink, LayoutWriter

__all__ = ["LAYOUTS", "ClipPlan", "FrameSink", "LayoutWriter"]
