import sys

from sealmq.cli.main import main

sys.exit(main())
