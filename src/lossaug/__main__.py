"""``python -m lossaug`` is the ``lossaug`` command."""

import sys

from lossaug.cli import main

sys.exit(main())
