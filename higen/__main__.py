import sys

from higen.cli.main import main

sys.exit(main())
