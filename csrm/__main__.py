import sys

from csrm.app.cli import main

sys.exit(main())
