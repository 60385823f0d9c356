import sys

from o1search.cli import main

sys.exit(main())
