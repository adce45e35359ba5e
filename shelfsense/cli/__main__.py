import sys

from shelfsense.cli.main import main

sys.exit(main())
