import sys

from avlib.cli import main

sys.exit(main())
