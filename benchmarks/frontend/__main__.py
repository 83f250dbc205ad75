import sys

from benchmarks.frontend.page import main

sys.exit(main())
