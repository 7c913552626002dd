from SegmentEditorEffects import *  # noqa: F401,F403  (abstract effect bases, as Slicer's templates do)

from .SegmentEditorEffect import *  # noqa: F401,F403
