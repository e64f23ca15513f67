import sys

from oicp.simulator.command import main

sys.exit(main())
