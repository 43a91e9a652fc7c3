"""The wheel carries the files the course ships from ``data/`` (``course_lib/utils/paths.py`` reads them there).

Everything else about the package is in ``pyproject.toml``. ``build_py`` copies ``SHIPPED`` from ``data/`` into
``course_lib/shipped_data/`` of the build; an editable install (``pip install -e .``, what ``./course`` does)
reads ``data/`` in the checkout instead and copies nothing.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("course_maskrcnn.pt", "course_maskrcnn.json", "NUCLEI.md")  # MANIFEST.in lists them for an sdist


class BuildWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = Path(__file__).resolve().parent / "data"
        missing = [name for name in SHIPPED if not (source / name).is_file()]
        if missing:
            raise SystemExit(f"setup.py: {', '.join(missing)} missing from {source}: the wheel would have no "
                             "course checkpoint (build from a checkout, or an sdist made by `python -m build`)")
        target = Path(self.build_lib) / "course_lib" / "shipped_data"
        target.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            shutil.copyfile(source / name, target / name)


setup(cmdclass={"build_py": BuildWithData})
