import sys

from pampero.cli import main

sys.exit(main())
