import sys

from seed_data.cli import main

sys.exit(main())
