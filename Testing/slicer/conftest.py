import sys
import pytest
pytest.importorskip("nonexistent_xyz_mod")
