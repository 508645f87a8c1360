"""``python -m seganypet.train ...`` (also under torchrun): the ``seganypet train`` command."""

import sys

from seganypet.train.command import main

sys.exit(main())
