"""`python -m composer.cli`: the same as the `fleet` command."""

import sys

from composer.cli.main import main

sys.exit(main())
