"""``python -m mediasec`` is the ``mediasec`` command."""

import sys

from mediasec.cli.main import main

sys.exit(main())
