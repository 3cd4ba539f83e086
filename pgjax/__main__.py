import sys

from pgjax.cli import main

sys.exit(main())
